// A controlled interleaving of concurrent operations over real sockets, for the history checker.
// Every cache command and origin call an operation makes waits at a gate until the driver lets it
// through; the driver lets one through at a time and waits until everything it set off has
// settled (the command answered by the real memcached, the operation's code run up to its next
// gate or its end) before choosing again. Which operation moves next is the only freedom, and it
// comes from a seeded random source or from a recorded list of decisions, so a seed replays the
// same history, command for command.
//
// An operation is known by the AsyncLocalStorage context it runs in (run()), so the gates need no
// argument threaded through the library: a wrapped client method asks "whose command is this?".
// Waiting for "settled" needs no knowledge of the library's pauses either: an operation that has
// not ended and waits at no gate is still moving, whatever it awaits.

import { AsyncLocalStorage } from "node:async_hooks";
import { setImmediate as nextTurn } from "node:timers/promises";

/** A seeded source of randomness (mulberry32): the same seed, the same sequence. */
export interface Random {
  /** In [0, 1). */
  next(): number;
  /** A whole number in [0, n). */
  int(n: number): number;
  pick<T>(items: readonly T[]): T;
  chance(probability: number): boolean;
}

export function seededRandom(seed: number): Random {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
  const int = (n: number) => Math.floor(next() * n);
  return {
    next,
    int,
    pick: (items) => items[int(items.length)]!,
    chance: (probability) => next() < probability,
  };
}

/** A command waiting at its gate. */
export interface PendingCommand {
  op: number;
  label: string;
  release: () => void;
}

/** One command that went through a gate, in the order they went. */
export interface TraceEntry {
  /** The driver's decision during which the command ran. */
  step: number;
  op: number;
  label: string;
  outcome: string;
}

export class Scheduler {
  /** The driver's decision count: operations' start and end are recorded in these steps. */
  step = 0;
  readonly trace: TraceEntry[] = [];
  readonly #context = new AsyncLocalStorage<number>();
  #pending: PendingCommand[] = [];
  #inFlight = 0;
  /** Operations started and not ended yet. */
  readonly #active = new Set<number>();
  #wake: (() => void) | undefined;

  /** Runs `operation` as operation `op`: its commands wait at the gates. */
  run<T>(op: number, operation: () => Promise<T>): Promise<T> {
    this.#active.add(op);
    return this.#context.run(op, async () => {
      try {
        return await operation();
      } finally {
        this.#active.delete(op);
        this.#poke();
      }
    });
  }

  /** The operation the caller runs in, if any. */
  current(): number | undefined {
    return this.#context.getStore();
  }

  /**
   * One command of the current operation: waits for its turn, then sends it. Outside an
   * operation (setup, checks) it is sent at once.
   */
  async gate<T>(label: string, send: () => Promise<T>): Promise<T> {
    const op = this.current();
    if (op === undefined) return send();
    await new Promise<void>((release) => {
      this.#pending.push({ op, label, release });
      this.#poke();
    });
    const entry: TraceEntry = { step: this.step, op, label, outcome: "" };
    this.trace.push(entry);
    try {
      const result = await send();
      entry.outcome = summarize(result);
      return result;
    } catch (error) {
      entry.outcome = `error ${(error as Error).name}: ${(error as Error).message}`;
      throw error;
    } finally {
      this.#inFlight--;
      this.#poke();
    }
  }

  /** Commands waiting at their gates, oldest first. */
  pending(): readonly PendingCommand[] {
    return this.#pending;
  }

  /** Lets one waiting command through. */
  release(command: PendingCommand): void {
    this.#pending = this.#pending.filter((pending) => pending !== command);
    this.#inFlight++;
    command.release();
  }

  /**
   * Resolves once nothing moves: every released command answered, and every operation that has
   * not ended waits at a gate (its code ran up to its next command: through any pause of its own,
   * such as a waiter's poll or a CAS retry's jitter). Two turns of the event loop with nothing new
   * confirm it.
   */
  async settle(): Promise<void> {
    const started = Date.now();
    for (;;) {
      while (!this.#still()) {
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
          setTimeout(resolve, 1_000).unref();
        });
        if (Date.now() - started > 30_000) {
          throw new Error(
            `operations ${[...this.#active].join(", ")} neither ended nor reached a gate in 30 s`,
          );
        }
      }
      await nextTurn();
      await nextTurn();
      if (this.#still()) return;
    }
  }

  #still(): boolean {
    if (this.#inFlight > 0) return false;
    for (const op of this.#active) {
      if (!this.#pending.some((pending) => pending.op === op)) return false;
    }
    return true;
  }

  #poke(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}

/** A short text for a command's result in a printed history. */
export function summarize(result: unknown): string {
  if (result === undefined) return "miss";
  if (result === null || typeof result !== "object") return String(result);
  if (Buffer.isBuffer(result)) return `bytes ${JSON.stringify(result.toString("latin1"))}`;
  const record = result as Record<string, unknown>;
  if (typeof record.code === "string") {
    const flags = record.flags as Record<string, string> | undefined;
    const shown = Object.entries(flags ?? {})
      .filter(([name]) => name !== "c" && name !== "t")
      .map(([name, value]) => `${name}${value}`)
      .join(" ");
    return shown === "" ? record.code : `${record.code} ${shown}`;
  }
  if (typeof record.statusCode === "number" && typeof record.body === "string") {
    return `response ${record.statusCode} ${record.body}`;
  }
  if ("cas" in record && "flags" in record) {
    return `item flags ${(record.flags as number).toString(16)} ${summarize(record.value)}`;
  }
  if (result instanceof Map) return `${result.size} hits`;
  const text = JSON.stringify(result);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}
