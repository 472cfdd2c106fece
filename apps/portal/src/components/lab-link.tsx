"use client";
// A student's console opened from a link a learning-management system handed out. The link is
// single use: it is exchanged once for a console, and reconnecting needs a fresh link.
import { useMutation } from "@tanstack/react-query";
import { useEffect, useRef, useState } from "react";
import { useTRPC } from "../trpc/client.tsx";
import { VmConsole } from "./vm-console.tsx";

export function LabLink({ token }: { token: string }) {
  const trpc = useTRPC();
  const { mutateAsync: openLink } = useMutation(trpc.labSeat.openLink.mutationOptions());
  const [opened, setOpened] = useState(false);
  const [problem, setProblem] = useState<string | null>(token === "" ? "This address has no lab link in it (?token=…). Open the lab again from your course page." : null);
  // The first console URL is handed to the console once; a reconnect cannot reuse it.
  const unused = useRef<string | null>(null);
  const asked = useRef(false);

  useEffect(() => {
    if (token === "" || asked.current) return;
    asked.current = true;
    openLink({ token })
      .then((result) => {
        unused.current = result.url;
        setOpened(true);
      })
      .catch((error: unknown) => setProblem(error instanceof Error ? error.message : "This lab link could not be opened; open the lab again from your course page."));
  }, [token, openLink]);

  async function openConsole() {
    const url = unused.current;
    if (url === null) throw new Error("This lab link has been used. To reconnect, open the lab again from your course page.");
    unused.current = null;
    return { url };
  }

  return (
    <>
      <div className="page-head">
        <h1>Lab console</h1>
      </div>
      {problem && (
        <div className="error" role="alert" data-testid="lab-link-error">
          {problem}
        </div>
      )}
      {!problem && !opened && <div className="panel muted">Opening your lab…</div>}
      {opened && (
        <div className="panel">
          <VmConsole running openConsole={openConsole} />
        </div>
      )}
    </>
  );
}
