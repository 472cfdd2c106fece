// What a vm may be created from: the guest images and hardware profiles the engine knows.
import { guestImageCatalog, hardwareProfiles } from "@ferry/engine";

/** Image names a vm can be created from, with the least memory each boots in. */
export function guestImages(): { name: string; minMemoryMiB: number }[] {
  return Object.entries(guestImageCatalog).map(([name, image]) => ({ name, minMemoryMiB: image.minMemoryMiB }));
}

/** Hardware profile names a vm can be created with. */
export function profileNames(): string[] {
  return Object.keys(hardwareProfiles);
}
