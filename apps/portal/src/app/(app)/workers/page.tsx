import { WorkerList } from "../../../components/worker-list.tsx";

export default function WorkersPage() {
  return <WorkerList />;
}
