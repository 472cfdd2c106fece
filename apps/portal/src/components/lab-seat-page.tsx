"use client";
// A student's lab: the class's instructions beside their vm's console, the time they have left
// in all and in this session (the server's figures, counted down between refreshes), start or
// resume, reset to the golden point, and a banner while an instructor has control.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import Link from "next/link";
import { useState } from "react";
import { useTRPC } from "../trpc/client.tsx";
import { LabInstructions } from "./lab-instructions.tsx";
import { Countdown, useNow } from "./lab-time.tsx";
import { VmConsole } from "./vm-console.tsx";

/** Why the student cannot work in the lab now, or null when they can. */
function closedBecause(seat: { class: { status: string; opensAt: string; closesAt: string }; secondsLeft: number }, now: number): string | null {
  const opensAt = new Date(seat.class.opensAt);
  const closesAt = new Date(seat.class.closesAt);
  if (seat.class.status === "ended" || closesAt.getTime() <= now) {
    return `This class is closed (it closed ${closesAt.toLocaleString()}). Your vm is kept suspended as you left it; ask your instructor if you need it again.`;
  }
  if (opensAt.getTime() > now) return `This class is not open yet: it opens ${opensAt.toLocaleString()}.`;
  if (seat.secondsLeft <= 0) {
    return "Your time for this lab is used up. Your vm is suspended as you left it; ask your instructor to extend your time.";
  }
  return null;
}

export function LabSeatPage({ seatId }: { seatId: string }) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const seatQuery = useQuery(trpc.labSeat.get.queryOptions({ id: seatId }, { refetchInterval: 2000 }));
  const { mutateAsync: issueConsole } = useMutation(trpc.labSeat.console.mutationOptions());
  const start = useMutation(trpc.labSeat.start.mutationOptions());
  const reset = useMutation(trpc.labSeat.reset.mutationOptions());
  const now = useNow();
  const [actionError, setActionError] = useState<string | null>(null);

  if (seatQuery.isPending) return <div className="panel muted">Loading your lab…</div>;
  if (seatQuery.isError) {
    return (
      <div className="error">
        {seatQuery.error.message} <Link href="/labs">Back to your labs</Link>
      </div>
    );
  }
  const seat = seatQuery.data;
  const running = seat.vmState === "running";
  const fetchedAt = seatQuery.dataUpdatedAt;
  const closed = closedBecause(seat, now);
  const settled = seat.vmState === null || ["running", "stopped", "suspended", "failed"].includes(seat.vmState);

  async function act(what: string, action: () => Promise<unknown>) {
    setActionError(null);
    try {
      await action();
      await queryClient.invalidateQueries({ queryKey: trpc.labSeat.get.queryKey({ id: seatId }) });
    } catch (error) {
      setActionError(error instanceof Error ? error.message : `${what} failed; try again.`);
    }
  }

  function resetVm() {
    if (!window.confirm("Reset your vm to the start of the lab? Everything you did since the lab's starting point is lost.")) return;
    void act("Reset", () => reset.mutateAsync({ id: seatId }));
  }

  return (
    <>
      <div className="page-head">
        <div>
          <div className="muted" style={{ fontSize: 13 }}>
            <Link href="/labs">My labs</Link> /
          </div>
          <h1 data-testid="lab-class-name">{seat.class.name}</h1>
        </div>
        <div className="lab-clock">
          <div>
            <span className="muted">time left</span>
            <strong>
              <Countdown seconds={seat.secondsLeft} fetchedAt={fetchedAt} testId="lab-time-left" />
            </strong>
          </div>
          <div>
            <span className="muted">{running ? "this session" : "next session"}</span>
            <strong>
              <Countdown seconds={seat.sessionSecondsLeft} fetchedAt={fetchedAt} testId="lab-session-left" />
            </strong>
          </div>
        </div>
      </div>

      {seat.controlledBy && (
        <div className="banner" role="status" data-testid="lab-controlled">
          Your instructor {seat.controlledBy.name} has control of your console: they can type and click in your vm until they release it.
        </div>
      )}
      {closed && (
        <div className="panel notice" data-testid="lab-closed">
          {closed}
        </div>
      )}

      <div className="lab-layout">
        <div className="panel lab-instructions">
          <h2>Instructions</h2>
          <LabInstructions text={seat.class.instructions} />
        </div>
        <div className="panel lab-console">
          <div className="actions" style={{ marginTop: 0, marginBottom: 12 }}>
            {!running && (
              <button type="button" className="primary" disabled={start.isPending || !settled || closed !== null} onClick={() => void act("Starting", () => start.mutateAsync({ id: seatId }))} data-testid="lab-start">
                {start.isPending && <span className="spinner" />}
                {seat.vmId === null ? "Start the lab" : seat.vmState === "suspended" ? "Resume" : "Start"}
              </button>
            )}
            <button type="button" className="danger" disabled={reset.isPending || seat.vmId === null || !settled || closed !== null} onClick={resetVm} data-testid="lab-reset">
              {reset.isPending && <span className="spinner" />}
              Reset
            </button>
            {!settled && (
              <span className="busy" data-testid="lab-busy">
                <span className="spinner" />
                {seat.vmState}…
              </span>
            )}
          </div>
          {actionError && (
            <div className="error" role="alert" data-testid="lab-action-error">
              {actionError}
            </div>
          )}
          {seat.vmId === null ? (
            <div className="console-screen">
              <div className="placeholder">Your vm is made when you start the lab.</div>
            </div>
          ) : (
            <VmConsole vmId={seat.vmId} running={running} openConsole={() => issueConsole({ id: seatId })} />
          )}
        </div>
      </div>
    </>
  );
}
