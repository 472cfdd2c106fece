"use client";
// The instructor's wall: a live thumbnail of every student's screen, refreshed every few
// seconds (each request also tells the workers someone is still watching, so they render
// thumbnails only of watched vms), and the console of the student picked, view-only unless the
// instructor takes control, which the student's page announces.
import { useMutation } from "@tanstack/react-query";
import { useEffect, useRef, useState } from "react";
import { useTRPC } from "../trpc/client.tsx";
import { VmConsole } from "./vm-console.tsx";

const refreshMs = 3000;

export interface WallSeat {
  id: string;
  email: string;
  vmId: string | null;
  vmState: string | null;
  controlledBy: { id: string; name: string } | null;
}

/** The index of the current refresh, advanced every `refreshMs`; part of each thumbnail's URL so the browser fetches it anew. */
function useRefreshTick(): number {
  const [tick, setTick] = useState(0);
  useEffect(() => {
    const timer = setInterval(() => setTick((t) => t + 1), refreshMs);
    return () => clearInterval(timer);
  }, []);
  return tick;
}

function Thumbnail({ classId, seat, tick, onOpen, open }: { classId: string; seat: WallSeat; tick: number; onOpen(): void; open: boolean }) {
  // Kept in the page while a fetch fails (no thumbnail yet, vm not running), so the next tick tries again.
  const [shown, setShown] = useState(false);
  const running = seat.vmState === "running";
  const placeholder = seat.vmId === null ? "no vm yet" : !running ? (seat.vmState ?? "—") : "waiting for the first picture…";
  return (
    <button type="button" className={`wall-tile${open ? " open" : ""}`} onClick={onOpen} data-testid={`wall-tile-${seat.email}`} title={`Open ${seat.email}'s console`}>
      <span className="wall-screen">
        {seat.vmId !== null && (
          <img
            src={`/api/classes/${classId}/seats/${seat.id}/thumbnail?t=${tick}`}
            alt={`${seat.email}'s screen`}
            style={{ visibility: shown ? "visible" : "hidden" }}
            onLoad={() => setShown(true)}
            onError={() => setShown(false)}
            data-testid="wall-thumbnail"
          />
        )}
        {!shown && (
          <span className="wall-placeholder" data-testid="wall-placeholder">
            {placeholder}
          </span>
        )}
      </span>
      <span className="wall-caption">
        <span className="wall-email">{seat.email}</span>
        {seat.controlledBy && <span className="wall-control">controlled by {seat.controlledBy.name}</span>}
      </span>
    </button>
  );
}

export function LabWall({ classId, seats }: { classId: string; seats: WallSeat[] }) {
  const trpc = useTRPC();
  const tick = useRefreshTick();
  const [openSeatId, setOpenSeatId] = useState<string | null>(null);
  const [mode, setMode] = useState<"view" | "control">("view");
  const [problem, setProblem] = useState<string | null>(null);
  const { mutateAsync: issueConsole } = useMutation(trpc.labClass.console.mutationOptions());
  const release = useMutation(trpc.labClass.release.mutationOptions());
  const openSeat = seats.find((s) => s.id === openSeatId) ?? null;
  // The seat whose console this instructor holds with control: released when they leave the
  // page, so the student's page does not keep announcing a control nobody holds.
  const held = useRef<string | null>(null);
  held.current = openSeatId !== null && mode === "control" ? openSeatId : null;
  const { mutate: releaseOnLeave } = release;
  useEffect(
    () => () => {
      if (held.current !== null) releaseOnLeave({ id: classId, seatId: held.current });
    },
    [classId, releaseOnLeave],
  );

  async function releaseControl(seatId: string) {
    setProblem(null);
    try {
      await release.mutateAsync({ id: classId, seatId });
      setMode("view");
    } catch (error) {
      setProblem(error instanceof Error ? error.message : "Could not release the console; try again.");
    }
  }

  async function pick(seatId: string) {
    if (seatId === openSeatId) return;
    if (openSeatId !== null && mode === "control") await releaseControl(openSeatId);
    setMode("view");
    setOpenSeatId(seatId);
  }

  function takeControl() {
    if (openSeat === null) return;
    if (!window.confirm(`Take control of ${openSeat.email}'s console? Their page will show that you have control until you release it. This is recorded in the audit log.`)) return;
    setMode("control");
  }

  async function close() {
    if (openSeatId !== null && mode === "control") await releaseControl(openSeatId);
    setOpenSeatId(null);
  }

  if (seats.length === 0) return <p className="muted">No students yet: add them to the roster or share the join code.</p>;
  return (
    <>
      <div className="wall" data-testid="wall">
        {seats.map((seat) => (
          <Thumbnail key={seat.id} classId={classId} seat={seat} tick={tick} open={seat.id === openSeatId} onOpen={() => void pick(seat.id)} />
        ))}
      </div>
      {openSeat !== null && (
        <div className="wall-console" data-testid="wall-console">
          <div className="console-bar">
            <strong>{openSeat.email}</strong>
            <span className={`console-mode ${mode}`} data-testid="wall-console-mode">
              {mode === "view" ? "watching (view only)" : "you have control"}
            </span>
            {mode === "view" ? (
              <button type="button" onClick={takeControl} disabled={openSeat.vmState !== "running"} data-testid="wall-take-control">
                Take control
              </button>
            ) : (
              <button type="button" onClick={() => void releaseControl(openSeat.id)} disabled={release.isPending} data-testid="wall-release">
                {release.isPending && <span className="spinner" />}
                Release
              </button>
            )}
            <button type="button" onClick={() => void close()} data-testid="wall-console-close">
              Close
            </button>
          </div>
          {problem && (
            <div className="error" role="alert">
              {problem}
            </div>
          )}
          {openSeat.vmId === null ? (
            <p className="muted">{openSeat.email} has no vm yet: it is made when the class starts or when they first open the lab.</p>
          ) : (
            <VmConsole
              key={openSeat.id}
              vmId={openSeat.vmId}
              running={openSeat.vmState === "running"}
              viewOnly={mode === "view"}
              openConsole={() => issueConsole({ id: classId, seatId: openSeat.id, mode })}
            />
          )}
        </div>
      )}
    </>
  );
}
