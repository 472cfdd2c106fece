// Input fields several procedures share, so each is checked and worded the same way everywhere.
import { z } from "zod";

/** Newline, tab, escape and the other C0/C1 controls: never in a name a person will see. */
export const controlCharacters = /[\u0000-\u001f\u007f-\u009f]/;

/** The name of a vm, project, organization, token or template. */
export const displayName = z
  .string()
  .min(1, { error: "must be 1-63 characters" })
  .max(63, { error: "must be 1-63 characters" })
  .refine((value) => !controlCharacters.test(value), { error: "must not contain control characters (newline, tab, escape...)" });

/** An id in a path or body. */
export const recordId = z.string().min(1).max(100);
