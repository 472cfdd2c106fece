/** The cookie that keeps the chosen project between visits; the signed-in layout reads it on the server. */
export const projectCookie = "ferry_project";
