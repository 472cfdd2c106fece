"use client";
// A class's instructions, written in Markdown by the instructor. react-markdown builds React
// elements (no innerHTML); raw HTML in the text is dropped and unsafe link targets
// (javascript:, data:) are removed by its default URL transform.
import Markdown from "react-markdown";

export function LabInstructions({ text }: { text: string }) {
  if (text.trim() === "") return <p className="muted">Your instructor has written no instructions for this lab.</p>;
  return (
    <div className="markdown" data-testid="lab-instructions">
      <Markdown
        skipHtml
        components={{
          // Links open beside the lab, so the console stays connected.
          a: ({ node: _node, ...props }) => <a {...props} target="_blank" rel="noopener noreferrer" />,
        }}
      >
        {text}
      </Markdown>
    </div>
  );
}
