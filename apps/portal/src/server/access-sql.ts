// The visibility rule of access.ts (`visibleProjects`) as SQL, for lists read in one raw query.
// Apart from access.ts because client components import that file, and this one needs Prisma's
// runtime.
import { Prisma } from "@ferry/db";
import { isOperator, type Viewer } from "./access.ts";

/**
 * SQL condition on a project id column (e.g. `vm."projectId"`): the projects a viewer can see,
 * the rule of `visibleProjects` in a query's own terms, so a list page is one query (bench/api:
 * reading the project ids first, then the page, was two of the vm list's four round trips).
 */
export function visibleProjectsSql(viewer: Viewer, projectIdColumn: string): Prisma.Sql {
  if (isOperator(viewer)) return Prisma.sql`TRUE`;
  const column = Prisma.raw(projectIdColumn);
  const memberOf = (projectId: Prisma.Sql) =>
    Prisma.sql`EXISTS (SELECT 1 FROM project p JOIN membership m ON m."organizationId" = p."organizationId" WHERE p.id = ${projectId} AND m."userId" = ${viewer.id})`;
  // A token: its one project, so the list reads that project's index range.
  if (viewer.token !== null) return Prisma.sql`(${column} = ${viewer.token.projectId} AND ${memberOf(Prisma.sql`${viewer.token.projectId}`)})`;
  return memberOf(column);
}
