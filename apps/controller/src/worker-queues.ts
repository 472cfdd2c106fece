// The controller's handles on the workers' job queues, one per worker, opened on first use.
import { queueNames } from "@ferry/jobs";
import { Queue } from "bullmq";
import type { Redis } from "ioredis";

export class WorkerQueues {
  readonly #queues = new Map<string, Queue>();

  constructor(private readonly options: { redis: Redis; prefix: string }) {}

  /** The queue worker `workerId` takes its jobs from. */
  of(workerId: string): Queue {
    let queue = this.#queues.get(workerId);
    if (!queue) {
      queue = new Queue(queueNames.worker(workerId), { connection: this.options.redis, prefix: this.options.prefix });
      this.#queues.set(workerId, queue);
    }
    return queue;
  }

  async close(): Promise<void> {
    await Promise.all([...this.#queues.values()].map((queue) => queue.close()));
  }
}
