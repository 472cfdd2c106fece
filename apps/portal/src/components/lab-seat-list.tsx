"use client";
// A student's lab seats (the classes they are on the roster of, or joined), and joining a class with its code.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import Link from "next/link";
import { useRouter } from "next/navigation";
import { useState, type FormEvent } from "react";
import { useTRPC } from "../trpc/client.tsx";
import { formatDuration } from "./lab-time.tsx";

export function LabSeatList() {
  const trpc = useTRPC();
  const router = useRouter();
  const queryClient = useQueryClient();
  const seats = useQuery(trpc.labSeat.mine.queryOptions(undefined, { refetchInterval: 5000 }));
  const join = useMutation(trpc.labSeat.join.mutationOptions());
  const [joinError, setJoinError] = useState<string | null>(null);

  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const code = String(new FormData(event.currentTarget).get("code") ?? "").trim();
    setJoinError(null);
    if (code === "") {
      setJoinError("Type the join code your instructor gave you.");
      return;
    }
    try {
      const seat = await join.mutateAsync({ code });
      await queryClient.invalidateQueries({ queryKey: trpc.labSeat.mine.queryKey() });
      router.push(`/labs/${seat.id}`);
    } catch (error) {
      setJoinError(error instanceof Error ? error.message : "Could not join the class; try again.");
    }
  }

  return (
    <>
      <div className="panel">
        <h2>Join a class</h2>
        <form className="inline-form" onSubmit={submit} style={{ marginTop: 0 }}>
          <div className="field">
            <label htmlFor="join-code">Join code</label>
            <input id="join-code" name="code" autoComplete="off" placeholder="from your instructor" data-testid="labs-join-code" />
          </div>
          <button type="submit" className="primary" disabled={join.isPending} data-testid="labs-join">
            {join.isPending && <span className="spinner" />}
            Join
          </button>
        </form>
        {joinError && (
          <div className="error" role="alert" data-testid="labs-join-error">
            {joinError}
          </div>
        )}
      </div>
      {seats.isPending && <div className="panel muted">Loading your labs…</div>}
      {seats.isError && <div className="error">Could not load your labs: {seats.error.message}</div>}
      {seats.data && seats.data.items.length === 0 && (
        <div className="panel empty" data-testid="labs-none">
          You have no labs yet. When an instructor adds your address to a class, it shows here; or join one with its code.
        </div>
      )}
      {seats.data && seats.data.items.length > 0 && (
        <div className="panel table-scroll" style={{ padding: 0 }}>
          <table className="vms">
            <thead>
              <tr>
                <th>Class</th>
                <th>Status</th>
                <th>Open</th>
                <th>Time left</th>
              </tr>
            </thead>
            <tbody>
              {seats.data.items.map((seat) => (
                <tr key={seat.id} data-testid={`labs-seat-${seat.class.name}`}>
                  <td>
                    <Link href={`/labs/${seat.id}`}>{seat.class.name}</Link>
                  </td>
                  <td>{seat.class.status}</td>
                  <td>
                    {new Date(seat.class.opensAt).toLocaleString()} – {new Date(seat.class.closesAt).toLocaleString()}
                  </td>
                  <td>{formatDuration(seat.secondsLeft)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}
