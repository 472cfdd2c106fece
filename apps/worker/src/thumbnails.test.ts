import { PNG } from "pngjs";
import { describe, expect, it } from "vitest";

import { toThumbnail } from "./thumbnails.ts";

/** A PNG whose pixel (x, y) is `color(x, y)` as [r, g, b]. */
function png(width: number, height: number, color: (x: number, y: number) => [number, number, number]): Buffer {
  const image = new PNG({ width, height });
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      image.data.set([...color(x, y), 255], (y * width + x) * 4);
    }
  }
  return PNG.sync.write(image);
}

function pixel(image: PNG, x: number, y: number): number[] {
  const i = (y * image.width + x) * 4;
  return [...image.data.subarray(i, i + 3)];
}

describe("toThumbnail", () => {
  it("scales a 720x400 screen to 320 wide, height in proportion, keeping its colours where they were", () => {
    const screen = png(720, 400, (x) => (x < 360 ? [255, 0, 0] : [0, 0, 255]));
    const thumbnail = PNG.sync.read(toThumbnail(screen, 320));
    expect([thumbnail.width, thumbnail.height]).toEqual([320, 178]);
    expect(pixel(thumbnail, 0, 0)).toEqual([255, 0, 0]);
    expect(pixel(thumbnail, 159, 177)).toEqual([255, 0, 0]);
    expect(pixel(thumbnail, 160, 0)).toEqual([0, 0, 255]);
    expect(pixel(thumbnail, 319, 177)).toEqual([0, 0, 255]);
  });

  it("averages the box of source pixels each thumbnail pixel covers", () => {
    // 4x2 → 2x1: each thumbnail pixel is the mean of a 2x2 box.
    const values = [
      [0, 100, 200, 40],
      [20, 80, 0, 0],
    ];
    const screen = png(4, 2, (x, y) => [values[y]![x]!, 0, 255 - values[y]![x]!]);
    const thumbnail = PNG.sync.read(toThumbnail(screen, 2));
    expect([thumbnail.width, thumbnail.height]).toEqual([2, 1]);
    expect(pixel(thumbnail, 0, 0)).toEqual([50, 0, 205]);
    expect(pixel(thumbnail, 1, 0)).toEqual([60, 0, 195]);
  });

  it("returns a screen no wider than the thumbnail as it is", () => {
    const screen = png(300, 200, () => [1, 2, 3]);
    expect(toThumbnail(screen, 320)).toBe(screen);
  });
});
