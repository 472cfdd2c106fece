"use client";
import { useQuery } from "@tanstack/react-query";
import { useEffect, useRef } from "react";
import { useTRPC } from "../trpc/client.tsx";

/** The vm's serial output, polled every second; sticks to the bottom unless scrolled up. */
export function SerialLog({ vmId }: { vmId: string }) {
  const trpc = useTRPC();
  const log = useQuery(trpc.vm.consoleLog.queryOptions({ id: vmId, tail: 500 }, { refetchInterval: 1000 }));
  const pre = useRef<HTMLPreElement>(null);
  const stuckToBottom = useRef(true);
  const text = log.data?.text ?? "";

  useEffect(() => {
    const element = pre.current;
    if (element && stuckToBottom.current) element.scrollTop = element.scrollHeight;
  }, [text]);

  return (
    <pre
      ref={pre}
      className="serial"
      data-testid="serial-log"
      onScroll={(event) => {
        const element = event.currentTarget;
        stuckToBottom.current = element.scrollHeight - element.scrollTop - element.clientHeight < 24;
      }}
    >
      {log.isError ? `Could not read the serial log: ${log.error.message}` : text || "No serial output yet."}
    </pre>
  );
}
