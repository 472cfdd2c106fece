"use client";
import { useRouter } from "next/navigation";
import { useState, type FormEvent } from "react";

export function SignInForm() {
  const router = useRouter();
  const [error, setError] = useState<string | null>(null);
  const [pending, setPending] = useState(false);

  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    setPending(true);
    setError(null);
    const response = await fetch("/api/auth/sign-in/email", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ email: form.get("email"), password: form.get("password") }),
    }).catch(() => null);
    setPending(false);
    if (response?.ok) {
      router.replace("/");
      router.refresh();
      return;
    }
    const body = (await response?.json().catch(() => null)) as { message?: string } | null;
    setError(
      response === null
        ? "The portal did not answer; check that it is running and try again."
        : response.status === 401
          ? "That email and password do not match an account. Check them and try again."
          : (body?.message ?? `Sign-in failed with status ${response.status}; try again.`),
    );
  }

  return (
    <form className="form" onSubmit={submit}>
      <div className="field">
        <label htmlFor="email">Email</label>
        <input id="email" name="email" type="email" autoComplete="username" required data-testid="sign-in-email" />
      </div>
      <div className="field">
        <label htmlFor="password">Password</label>
        <input id="password" name="password" type="password" autoComplete="current-password" required data-testid="sign-in-password" />
      </div>
      {error && <div className="error" role="alert">{error}</div>}
      <button className="primary" type="submit" disabled={pending} data-testid="sign-in-submit">
        {pending && <span className="spinner" />}
        {pending ? "Signing in…" : "Sign in"}
      </button>
    </form>
  );
}
