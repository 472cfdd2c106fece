// Thumbnails of the screens of this worker's vms, for the instructor's wall. Cheap by design:
// only vms someone is watching (a Redis key the portal refreshes) are rendered, one after
// another, every few seconds; the newest PNG goes to Redis with a short TTL, so a vm nobody
// watches any more, or one that stopped, costs nothing and its thumbnail goes away by itself.
import type { Vm } from "@ferry/engine";
import { redisKeys, thumbnailTiming } from "@ferry/jobs";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { PNG } from "pngjs";

/**
 * A PNG scaled down to `width` pixels wide (height in proportion), each pixel the average of
 * the box of source pixels it covers; a screen already that narrow is returned as it is.
 */
export function toThumbnail(png: Buffer, width: number): Buffer {
  const source = PNG.sync.read(png);
  if (source.width <= width) return png;
  const height = Math.max(1, Math.round((source.height * width) / source.width));
  const out = new PNG({ width, height });
  for (let y = 0; y < height; y++) {
    const y0 = Math.floor((y * source.height) / height);
    const y1 = Math.max(y0 + 1, Math.floor(((y + 1) * source.height) / height));
    for (let x = 0; x < width; x++) {
      const x0 = Math.floor((x * source.width) / width);
      const x1 = Math.max(x0 + 1, Math.floor(((x + 1) * source.width) / width));
      let r = 0;
      let g = 0;
      let b = 0;
      for (let sy = y0; sy < y1; sy++) {
        for (let sx = x0; sx < x1; sx++) {
          const i = (sy * source.width + sx) * 4;
          r += source.data[i]!;
          g += source.data[i + 1]!;
          b += source.data[i + 2]!;
        }
      }
      const count = (y1 - y0) * (x1 - x0);
      const o = (y * width + x) * 4;
      out.data[o] = Math.round(r / count);
      out.data[o + 1] = Math.round(g / count);
      out.data[o + 2] = Math.round(b / count);
      out.data[o + 3] = 255;
    }
  }
  // A screen has no transparency: RGB is a quarter smaller than RGBA.
  return PNG.sync.write(out, { colorType: 2 });
}

export interface Thumbnails {
  /** Render every watched running vm once (or wait for the round under way); resolves to how many were rendered. */
  renderOnce(): Promise<number>;
  /** Stop rendering; waits for a round under way. */
  stop(): Promise<void>;
}

/** Render thumbnails of the watched ones among `vms()` every `intervalMs`. */
export function startThumbnails(options: {
  redis: Redis;
  prefix: string;
  vms: () => Iterable<{ vmId: string; engineVm: Vm | undefined }>;
  intervalMs?: number;
  log: Logger;
}): Thumbnails {
  const { redis, prefix, log } = options;
  let round: Promise<number> | undefined;

  const render = async (): Promise<number> => {
    const running = [...options.vms()].filter((vm): vm is { vmId: string; engineVm: Vm } => vm.engineVm?.state === "running");
    if (running.length === 0) return 0;
    const watched = await redis.mget(running.map((vm) => redisKeys.vmThumbnailWatched(prefix, vm.vmId)));
    let rendered = 0;
    for (const [i, { vmId, engineVm }] of running.entries()) {
      if (watched[i] === null) continue;
      try {
        const thumbnail = toThumbnail(await engineVm.screendump(), thumbnailTiming.width);
        await redis.set(redisKeys.vmThumbnail(prefix, vmId), thumbnail, "EX", thumbnailTiming.keepSeconds);
        rendered += 1;
      } catch (error) {
        // A vm stopping or moving while we look has no screen for a moment; the next round tries again.
        log.debug({ vmId, err: (error as Error).message }, "thumbnail: could not render the vm's screen");
      }
    }
    return rendered;
  };

  const renderOnce = (): Promise<number> =>
    (round ??= render()
      .catch((error: unknown) => {
        log.warn({ err: (error as Error).message }, "thumbnail: a round failed; the next one tries again");
        return 0;
      })
      .finally(() => {
        round = undefined;
      }));

  const timer = setInterval(() => void renderOnce(), options.intervalMs ?? thumbnailTiming.intervalMs);
  timer.unref();
  return {
    renderOnce,
    async stop() {
      clearInterval(timer);
      await round;
    },
  };
}
