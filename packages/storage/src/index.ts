// @ferry/storage: object storage (a local folder or, through "@ferry/storage/s3", an
// S3-protocol bucket) and the guest states kept in it.
export { StorageError, isStorageError, type StorageErrorCode } from "./errors.ts";
export { checkKey, checkPrefix, type ObjectInfo, type ObjectStore, type PutOptions } from "./object-store.ts";
export { LocalFolderStore } from "./local-folder.ts";
export { openObjectStore, storeConfigSchema, type StoreConfig } from "./store-config.ts";
export {
  GuestStateReader,
  GuestStateStore,
  GuestStateWriter,
  type AddStreamOptions,
  type GuestStateProgress,
  type GuestStateRef,
  type GuestStateStream,
  type GuestStateSummary,
} from "./guest-state-store.ts";
