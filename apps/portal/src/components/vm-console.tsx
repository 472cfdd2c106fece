"use client";
// The vm's screen through noVNC. noVNC is browser-only (top-level await, DOM), so it is
// imported inside an effect; each connection uses a fresh single-use console token. A view-only
// console (an instructor watching a student) sends no keys or pointer; the gateway drops them too.
import type RFB from "@novnc/novnc";
import { useMutation } from "@tanstack/react-query";
import { useCallback, useEffect, useRef, useState } from "react";
import { useTRPC } from "../trpc/client.tsx";
import { keyPressOf, typeAsUsKeyboard } from "./us-keyboard.ts";

type Status = "connecting" | "connected" | "disconnected";

/** Issues a console URL (single use). */
export type OpenConsole = () => Promise<{ url: string }>;

/** A vm's console through `vm.console`, or through `openConsole` (a lab seat's procedure, a student link) when given. */
type ConsoleSource = { vmId: string; openConsole?: OpenConsole } | { vmId?: undefined; openConsole: OpenConsole };

export function VmConsole({ vmId, running, viewOnly = false, openConsole }: ConsoleSource & { running: boolean; viewOnly?: boolean }) {
  const trpc = useTRPC();
  const { mutateAsync: issueToken } = useMutation(trpc.vm.console.mutationOptions());
  // Read through a ref so a caller's new function on every render does not reconnect the console.
  const opener = useRef(openConsole);
  opener.current = openConsole;
  const screen = useRef<HTMLDivElement>(null);
  const rfb = useRef<RFB | null>(null);
  const [status, setStatus] = useState<Status>("disconnected");
  const [problem, setProblem] = useState<string | null>(null);
  const [paste, setPaste] = useState("");

  const disconnect = useCallback(() => {
    rfb.current?.disconnect();
    rfb.current = null;
  }, []);

  const connect = useCallback(async () => {
    const target = screen.current;
    if (!target) return;
    disconnect();
    setStatus("connecting");
    setProblem(null);
    try {
      const [{ url }, { default: RFBClass }] = await Promise.all([opener.current ? opener.current() : issueToken({ id: vmId! }), import("@novnc/novnc")]);
      target.replaceChildren();
      // Our own websocket: noVNC's disconnect event drops the gateway's close reason (e.g.
      // "access revoked: ..."), which the person should read. Listening before noVNC attaches
      // means the reason is known when its disconnect event fires.
      const socket = new WebSocket(url);
      let closedBecause: string | null = null;
      socket.addEventListener("close", (event) => {
        if (event.reason) closedBecause = `Console closed: ${event.reason}`;
      });
      const client = new RFBClass(target, socket);
      client.scaleViewport = true;
      client.viewOnly = viewOnly;
      client.background = "#000";
      typeAsUsKeyboard(client);
      client.addEventListener("connect", () => setStatus("connected"));
      client.addEventListener("disconnect", (event) => {
        if (rfb.current !== client) return;
        rfb.current = null;
        setStatus("disconnected");
        if (closedBecause !== null) setProblem(closedBecause);
        else if (!(event as CustomEvent<{ clean: boolean }>).detail.clean) setProblem("The console connection was lost.");
      });
      // QEMU's VNC asks for no password; answer an unexpected prompt with none rather than hang.
      client.addEventListener("credentialsrequired", () => client.sendCredentials({ password: "" }));
      rfb.current = client;
    } catch (error) {
      setStatus("disconnected");
      setProblem(error instanceof Error ? error.message : "Could not open the console.");
    }
  }, [vmId, viewOnly, disconnect, issueToken]);

  useEffect(() => {
    if (running) void connect();
    else disconnect();
    return disconnect;
  }, [running, connect, disconnect]);

  function sendText() {
    const client = rfb.current;
    if (!client) return;
    const untyped = new Set<string>();
    for (const char of paste.replace(/\r\n?/g, "\n")) {
      const press = keyPressOf(char);
      if (press === null) {
        untyped.add(char);
        continue;
      }
      client.sendKey(press.keysym, press.code);
    }
    client.focus();
    setPaste("");
    setProblem(untyped.size > 0 ? `Not typed (no US-keyboard key for them): ${[...untyped].join(" ")}` : null);
  }

  return (
    <div>
      <div className="console-bar">
        <span className={`console-status ${status}`} data-testid="console-status">
          {status}
        </span>
        {!viewOnly && (
          <button type="button" disabled={status !== "connected"} onClick={() => rfb.current?.sendCtrlAltDel()} data-testid="console-ctrl-alt-del">
            Ctrl-Alt-Del
          </button>
        )}
        {viewOnly && <span className="muted">view only</span>}
        <button type="button" onClick={() => void screen.current?.parentElement?.requestFullscreen()} data-testid="console-fullscreen">
          Fullscreen
        </button>
        {status === "disconnected" && running && (
          <button type="button" className="primary" onClick={() => void connect()} data-testid="console-reconnect">
            Reconnect
          </button>
        )}
        {problem && <span className="muted">{problem}</span>}
      </div>
      <div className="console-screen">
        {!running && <div className="placeholder">The console is available while the vm is running.</div>}
        <div ref={screen} style={{ width: "100%", height: "100%" }} data-testid="console-canvas" />
      </div>
      {!viewOnly && (
        <div className="paste">
          <textarea
            placeholder="Text to type into the vm, e.g. echo hi > /dev/ttyS0 (a newline presses Enter)"
            value={paste}
            onChange={(e) => setPaste(e.target.value)}
            data-testid="paste-text"
          />
          <button type="button" disabled={status !== "connected" || paste === ""} onClick={sendText} data-testid="paste-send">
            Paste as keys
          </button>
        </div>
      )}
    </div>
  );
}
