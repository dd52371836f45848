// serverless.yml includes the CloudWatch dashboard and alarms through this file: its `${file()}`
// variables load .js (not .ts) files. Node 24 — the project's pinned Node, which every npm script
// and `npx serverless` run — loads the TypeScript module directly.
import { cloudWatchResources } from "./dashboard.ts";

export const resources = cloudWatchResources();
