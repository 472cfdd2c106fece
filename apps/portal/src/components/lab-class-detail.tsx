"use client";
// A lab class, for its instructor: the schedule and limits, start and end, the join code, the
// wall of the students' screens, and the roster with each student's vm and time left, where
// time is extended and vms are reset for the selected students or for all.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import Link from "next/link";
import { useState, type FormEvent } from "react";
import { useTRPC } from "../trpc/client.tsx";
import { Countdown, toLocalInput } from "./lab-time.tsx";
import { LabWall } from "./lab-wall.tsx";

const statusClass: Record<string, string> = { scheduled: "suspended", started: "running", ended: "stopped" };

function messageOf(error: unknown, fallback: string): string {
  return error instanceof Error ? error.message : fallback;
}

export function LabClassDetail({ id }: { id: string }) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const classQuery = useQuery(trpc.labClass.get.queryOptions({ id }, { refetchInterval: 3000 }));
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [extendMinutes, setExtendMinutes] = useState(15);
  const [prewarm, setPrewarm] = useState(true);
  const [actionError, setActionError] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [studentLink, setStudentLink] = useState<{ email: string; url: string; expiresAt: string } | null>(null);

  const mutations = {
    start: useMutation(trpc.labClass.start.mutationOptions()),
    end: useMutation(trpc.labClass.end.mutationOptions()),
    extend: useMutation(trpc.labClass.extend.mutationOptions()),
    reset: useMutation(trpc.labClass.reset.mutationOptions()),
    addStudents: useMutation(trpc.labClass.addStudents.mutationOptions()),
    removeStudent: useMutation(trpc.labClass.removeStudent.mutationOptions()),
    newJoinCode: useMutation(trpc.labClass.newJoinCode.mutationOptions()),
    studentLink: useMutation(trpc.labClass.studentLink.mutationOptions()),
  };

  if (classQuery.isPending) return <div className="panel muted">Loading class…</div>;
  if (classQuery.isError) {
    return (
      <div className="error">
        {classQuery.error.message} <Link href="/classes">Back to the classes</Link>
      </div>
    );
  }
  const labClass = classQuery.data;
  const seats = labClass.seats;
  const fetchedAt = classQuery.dataUpdatedAt;
  const chosen = seats.filter((s) => selected.has(s.id));
  const sending = Object.values(mutations).some((m) => m.isPending);

  /** Runs an intervention, shows its refusal, and refreshes the class. */
  async function act(what: string, action: () => Promise<unknown>, done?: string) {
    setActionError(null);
    setNotice(null);
    try {
      await action();
      if (done) setNotice(done);
      await queryClient.invalidateQueries({ queryKey: trpc.labClass.get.queryKey({ id }) });
    } catch (error) {
      setActionError(messageOf(error, `${what} failed; try again.`));
    }
  }

  const target = chosen.length > 0 ? `the ${chosen.length} selected student${chosen.length === 1 ? "" : "s"}` : `all ${seats.length} students`;
  const seatIds = chosen.length > 0 ? { seatIds: chosen.map((s) => s.id) } : {};

  function endClass() {
    if (!window.confirm(`End class ${labClass.name}? Every running vm is suspended (nothing is lost) and students can no longer start them.`)) return;
    void act("Ending the class", () => mutations.end.mutateAsync({ id }), "The class has ended; the students' vms are being suspended.");
  }

  function resetSeats() {
    if (!window.confirm(`Reset the vms of ${target} to the template's golden point? Everything they did since is lost.`)) return;
    void act("Reset", async () => {
      const { notReset } = await mutations.reset.mutateAsync({ id, ...seatIds });
      const skipped = notReset.map((n) => `${n.email} (${n.reason})`).join("; ");
      setNotice(skipped === "" ? `Reset ${target}.` : `Reset ${target}, except ${skipped}.`);
    });
  }

  function extend() {
    if (!Number.isInteger(extendMinutes) || extendMinutes < 1) {
      setActionError(`Extend by a whole number of minutes, 1 or more (not ${extendMinutes}).`);
      return;
    }
    void act("Extending", () => mutations.extend.mutateAsync({ id, minutes: extendMinutes, ...seatIds }), `Gave ${target} ${extendMinutes} more minutes.`);
  }

  function removeStudent(seat: { id: string; email: string }) {
    if (!window.confirm(`Remove ${seat.email} from the class? Their vm is deleted.`)) return;
    void act(`Removing ${seat.email}`, () => mutations.removeStudent.mutateAsync({ id, seatId: seat.id }));
  }

  async function copyStudentLink(seat: { id: string; email: string }) {
    setActionError(null);
    setNotice(null);
    try {
      const link = await mutations.studentLink.mutateAsync({ id, seatId: seat.id });
      setStudentLink({ email: seat.email, ...link });
      await navigator.clipboard?.writeText(link.url).catch(() => undefined);
    } catch (error) {
      setActionError(messageOf(error, `Could not make a link for ${seat.email}; try again.`));
    }
  }

  function addStudents(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = event.currentTarget;
    const emails = [...new Set(String(new FormData(form).get("emails") ?? "").split(/[\s,;]+/).map((e) => e.trim().toLowerCase()).filter((e) => e !== ""))];
    if (emails.length === 0) {
      setActionError("Give at least one email address to add.");
      return;
    }
    void act("Adding students", async () => {
      await mutations.addStudents.mutateAsync({ id, emails });
      form.reset();
    });
  }

  function newJoinCode(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const expiresAt = new Date(String(new FormData(event.currentTarget).get("expiresAt") ?? ""));
    if (Number.isNaN(expiresAt.getTime())) {
      setActionError("Give the date and time the new join code expires.");
      return;
    }
    void act("Making a join code", () => mutations.newJoinCode.mutateAsync({ id, expiresAt: expiresAt.toISOString() }));
  }

  function toggle(seatId: string) {
    const next = new Set(selected);
    if (next.has(seatId)) next.delete(seatId);
    else next.add(seatId);
    setSelected(next);
  }

  const codeExpired = labClass.joinCodeExpiresAt !== null && new Date(labClass.joinCodeExpiresAt).getTime() <= fetchedAt;
  return (
    <>
      <div className="page-head">
        <div>
          <div className="muted" style={{ fontSize: 13 }}>
            <Link href="/classes">Classes</Link> /
          </div>
          <h1 data-testid="class-name">{labClass.name}</h1>
        </div>
        <span className={`state state-${statusClass[labClass.status] ?? "busy"}`} data-testid="class-status">
          {labClass.status}
        </span>
      </div>

      <div className="panel">
        <dl className="facts">
          <div>
            <dt>Opens</dt>
            <dd>{new Date(labClass.opensAt).toLocaleString()}</dd>
          </div>
          <div>
            <dt>Closes</dt>
            <dd>{new Date(labClass.closesAt).toLocaleString()}</dd>
          </div>
          <div>
            <dt>Per session</dt>
            <dd>{labClass.sessionMinutes} min</dd>
          </div>
          <div>
            <dt>Per student</dt>
            <dd>{labClass.totalMinutes} min in all</dd>
          </div>
          <div>
            <dt>Students</dt>
            <dd data-testid="class-seat-count">{seats.length}</dd>
          </div>
          <div>
            <dt>When full</dt>
            <dd>{labClass.whenFull === "queue" ? "queue" : "refuse"}</dd>
          </div>
        </dl>
        <div className="actions">
          {labClass.status === "scheduled" && (
            <>
              <button
                type="button"
                className="primary"
                disabled={sending}
                onClick={() => void act("Starting the class", () => mutations.start.mutateAsync({ id, prewarm }), prewarm ? "The class has started; the students' vms are being made." : "The class has started.")}
                data-testid="class-start"
              >
                {mutations.start.isPending && <span className="spinner" />}
                Start class
              </button>
              <label className="inline-check">
                <input type="checkbox" checked={prewarm} onChange={(e) => setPrewarm(e.target.checked)} data-testid="class-prewarm" />
                make every student&apos;s vm now
              </label>
            </>
          )}
          {labClass.status === "started" && (
            <button type="button" className="danger" disabled={sending} onClick={endClass} data-testid="class-end">
              {mutations.end.isPending && <span className="spinner" />}
              End class
            </button>
          )}
          {labClass.status === "ended" && <span className="muted">Ended {labClass.endedAt ? new Date(labClass.endedAt).toLocaleString() : ""}; the students&apos; vms are kept suspended.</span>}
        </div>
        {actionError && (
          <div className="error" role="alert" data-testid="class-action-error">
            {actionError}
          </div>
        )}
        {notice && (
          <p className="notice" data-testid="class-notice">
            {notice}
          </p>
        )}
      </div>

      <div className="panel" data-testid="class-join-code">
        <h2>Join code</h2>
        {labClass.joinCode ? (
          <p>
            Students join at <span className="mono">/labs</span> with the code <strong className="mono join-code" data-testid="class-join-code-value">{labClass.joinCode}</strong>{" "}
            <span className={codeExpired ? "field-error" : "muted"}>
              {codeExpired ? "expired" : "valid until"} {labClass.joinCodeExpiresAt ? new Date(labClass.joinCodeExpiresAt).toLocaleString() : ""}
            </span>
          </p>
        ) : (
          <p className="muted">No join code: only the students on the roster have a seat.</p>
        )}
        <form className="inline-form" onSubmit={newJoinCode}>
          <div className="field">
            <label htmlFor="join-code-expires">New code, valid until</label>
            <input id="join-code-expires" name="expiresAt" type="datetime-local" defaultValue={toLocalInput(new Date(labClass.closesAt))} />
          </div>
          <button type="submit" disabled={sending} data-testid="class-new-join-code">
            {labClass.joinCode ? "Replace the code" : "Make a code"}
          </button>
        </form>
      </div>

      {labClass.status !== "scheduled" && (
        <div className="panel">
          <h2>Students&apos; screens</h2>
          <LabWall classId={labClass.id} seats={seats} />
        </div>
      )}

      <div className="panel" data-testid="class-roster">
        <h2>Roster</h2>
        {seats.length > 0 && (
          <div className="actions bulk">
            <span className="muted">{chosen.length > 0 ? `${chosen.length} selected` : "none selected: acting on all"}</span>
            <label className="inline-check">
              extend by
              <input type="number" min={1} value={extendMinutes} onChange={(e) => setExtendMinutes(Number(e.target.value))} className="minutes" data-testid="class-extend-minutes" />
              min
            </label>
            <button type="button" disabled={sending} onClick={extend} data-testid="class-extend">
              Extend {chosen.length > 0 ? "selected" : "all"}
            </button>
            <button type="button" className="danger" disabled={sending || labClass.status === "scheduled"} onClick={resetSeats} data-testid="class-reset">
              Reset {chosen.length > 0 ? "selected" : "all"}
            </button>
          </div>
        )}
        {studentLink && (
          <div className="token-once" data-testid="class-student-link">
            A link for {studentLink.email}, single use, valid until {new Date(studentLink.expiresAt).toLocaleTimeString()} (copied if the browser allowed it):
            <div className="token-value">
              <input readOnly value={studentLink.url} onFocus={(e) => e.target.select()} data-testid="class-student-link-value" />
              <button type="button" onClick={() => setStudentLink(null)}>
                Done
              </button>
            </div>
          </div>
        )}
        {seats.length === 0 ? (
          <p className="muted">No students yet.</p>
        ) : (
          <div className="table-scroll">
            <table className="table">
              <thead>
                <tr>
                  <th>
                    <input
                      type="checkbox"
                      aria-label="select every student"
                      checked={chosen.length === seats.length}
                      onChange={(e) => setSelected(e.target.checked ? new Set(seats.map((s) => s.id)) : new Set())}
                    />
                  </th>
                  <th>Student</th>
                  <th>VM</th>
                  <th>Time left</th>
                  <th>Session left</th>
                  <th />
                </tr>
              </thead>
              <tbody>
                {seats.map((seat) => {
                  const running = seat.vmState === "running";
                  return (
                    <tr key={seat.id} data-testid={`seat-row-${seat.email}`}>
                      <td>
                        <input type="checkbox" aria-label={`select ${seat.email}`} checked={selected.has(seat.id)} onChange={() => toggle(seat.id)} />
                      </td>
                      <td>
                        {seat.email}
                        {seat.userId === null && <span className="reason">has not signed in yet</span>}
                        {seat.controlledBy && <span className="reason">controlled by {seat.controlledBy.name}</span>}
                      </td>
                      <td data-testid="seat-vm-state">
                        {seat.vmId ? (
                          <>
                            <span className={`state state-${seat.vmState === "running" || seat.vmState === "stopped" || seat.vmState === "suspended" || seat.vmState === "failed" ? seat.vmState : "busy"}`}>{seat.vmState}</span>
                            {seat.workerId && <span className="reason mono">{seat.workerId}</span>}
                          </>
                        ) : (
                          <span className="muted">no vm yet</span>
                        )}
                      </td>
                      <td>
                        <Countdown seconds={seat.secondsLeft} fetchedAt={fetchedAt} testId="seat-time-left" />
                      </td>
                      <td>{running ? <Countdown seconds={seat.sessionSecondsLeft} fetchedAt={fetchedAt} /> : "—"}</td>
                      <td className="row-actions">
                        <button type="button" disabled={sending} onClick={() => void copyStudentLink(seat)} data-testid="seat-copy-link">
                          Copy student link
                        </button>
                        <button type="button" className="danger" disabled={sending} onClick={() => removeStudent(seat)}>
                          Remove
                        </button>
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        )}
        <form className="inline-form" onSubmit={addStudents}>
          <div className="field" style={{ flex: 1 }}>
            <label htmlFor="roster-add">Add students</label>
            <textarea id="roster-add" name="emails" rows={2} placeholder="ada@example.com, grace@example.com" data-testid="class-add-emails" />
          </div>
          <button type="submit" disabled={sending} data-testid="class-add-students">
            Add
          </button>
        </form>
      </div>
    </>
  );
}
