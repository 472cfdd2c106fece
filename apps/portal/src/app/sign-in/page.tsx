import { headers } from "next/headers";
import { redirect } from "next/navigation";
import { portalServices } from "../../server/services.ts";
import { SignInForm } from "./sign-in-form.tsx";

export const dynamic = "force-dynamic";

export default async function SignInPage() {
  const { auth } = await portalServices();
  if ((await auth.api.getSession({ headers: await headers() })) !== null) redirect("/");
  return (
    <div className="sign-in">
      <div className="card">
        <h1>Ferry</h1>
        <p>Sign in to manage your vms.</p>
        <SignInForm />
      </div>
    </div>
  );
}
