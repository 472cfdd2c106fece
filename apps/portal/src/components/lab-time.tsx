"use client";
// Time in a lab class as a person reads it, and the countdowns the class and seat pages show.
// The server's figures are the truth; between two fetches the page counts down from the last one.
import { useEffect, useRef, useState } from "react";

/** "1 h 05 min", "4 min 07 s", "42 s". */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const hours = Math.floor(s / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  if (hours > 0) return `${hours} h ${String(minutes).padStart(2, "0")} min`;
  if (minutes > 0) return `${minutes} min ${String(s % 60).padStart(2, "0")} s`;
  return `${s} s`;
}

/** The current time, updated every second while the component is shown. */
export function useNow(): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, []);
  return now;
}

/**
 * Seconds left, counted down from the server's figure fetched at `fetchedAt`. The clock runs
 * between fetches only when the last two figures went down (a session is running, or the
 * class is closing): a suspended student's time stays where the server says it is.
 */
export function Countdown({ seconds, fetchedAt, testId }: { seconds: number; fetchedAt: number; testId?: string }) {
  const now = useNow();
  const last = useRef<{ seconds: number; fetchedAt: number; running: boolean } | null>(null);
  if (last.current === null || last.current.fetchedAt !== fetchedAt) {
    last.current = { seconds, fetchedAt, running: last.current !== null && seconds < last.current.seconds };
  }
  const shown = last.current.running ? seconds - (now - fetchedAt) / 1000 : seconds;
  return <span data-testid={testId}>{formatDuration(shown)}</span>;
}

/** A `<input type="datetime-local">` value (local time, minutes) for a date. */
export function toLocalInput(date: Date): string {
  const local = new Date(date.getTime() - date.getTimezoneOffset() * 60_000);
  return local.toISOString().slice(0, 16);
}
