// A fresh service that installs this package the way a team would: `npm pack`, then a new ESM
// TypeScript project (module/moduleResolution NodeNext, strict, skipLibCheck off) that installs
// the tarball, typechecks and compiles, and bundles its handler with esbuild. Used by the
// consumer test (test/package/consumer.test.ts) and by `npm run bench:package`.
//
// The project lives in the system's temp folder, away from this repository's node_modules, so
// only what the tarball and its declared dependencies bring can be resolved.

import { spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { serviceHandlerBlock } from "./readme.ts";

export const repoRoot = fileURLToPath(new URL("..", import.meta.url));

export interface RunResult {
  stdout: string;
  stderr: string;
  code: number | null;
}

/** Runs a command to completion (killed after `timeoutMs`); never rejects on a non-zero exit. */
export function run(
  command: string,
  args: readonly string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd ?? repoRoot,
      env: options.env ?? process.env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
    });
    const timer = setTimeout(() => {
      stderr += `\n[killed after ${options.timeoutMs} ms]`;
      child.kill("SIGKILL");
    }, options.timeoutMs ?? 120_000);
    child.once("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ stdout, stderr, code });
    });
  });
}

/** Like run(), but throws with the command's output when it exits non-zero. */
export async function runOk(
  command: string,
  args: readonly string[],
  options: Parameters<typeof run>[2] = {},
): Promise<RunResult> {
  const result = await run(command, args, options);
  if (result.code !== 0) {
    const output = `${result.stdout}\n${result.stderr}`.trim().slice(-4000);
    throw new Error(`${command} ${args.join(" ")} exited ${result.code}:\n${output}`);
  }
  return result;
}

// ---- the tarball ----

export interface Tarball {
  file: string;
  bytes: number;
  /** Paths inside the package, sorted. */
  files: string[];
}

/** `npm run build`, then `npm pack` into `destDir`: what `npm publish` would upload. */
export async function packTarball(destDir: string): Promise<Tarball> {
  await runOk("npm", ["run", "--silent", "build"]);
  // The build ran just above; --ignore-scripts keeps prepack's second build out of the JSON.
  const { stdout } = await runOk("npm", [
    "pack",
    "--json",
    "--ignore-scripts",
    "--pack-destination",
    destDir,
  ]);
  const [packed] = JSON.parse(stdout) as Array<{ filename: string; files: { path: string }[] }>;
  const file = path.join(destDir, packed!.filename);
  return {
    file,
    bytes: (await stat(file)).size,
    files: packed!.files.map((f) => f.path).sort(),
  };
}

// ---- the consumer project ----

/** The exact version of a package installed in this repository (so the cache has it). */
async function installedVersion(name: string): Promise<string> {
  const manifest = path.join(repoRoot, "node_modules", name, "package.json");
  return (JSON.parse(await readFile(manifest, "utf8")) as { version: string }).version;
}

const tsconfig = {
  compilerOptions: {
    target: "ES2022",
    module: "NodeNext",
    moduleResolution: "NodeNext",
    strict: true,
    skipLibCheck: false,
    types: ["node"],
    rootDir: "src",
    outDir: "out",
  },
  include: ["src"],
};

// Middy 7's own index.d.ts imports types from its optional peer @aws/durable-execution-sdk-js
// (middyjs/middy#1694), which a service that does not use durable functions does not install.
// With skipLibCheck off that is an error in Middy's typings, not ours; this is the workaround a
// team would add (the alternative is installing the SDK as a devDependency).
const middyDurableShim = `declare module "@aws/durable-execution-sdk-js" {
  export type DurableContext = never;
}
`;

// Invokes the handler module named on the command line (the compiled one or the esbuild bundle)
// the way Lambda would: twice with the same API Gateway event, once with another; one JSON line
// per invocation.
const invokeSource = `import type { APIGatewayProxyEventV2, Context } from "aws-lambda";

type HandlerModule = typeof import("./handler.js");
const target = process.argv[2] ?? "./handler.js";
const { handler } = (await import(target)) as HandlerModule;

const context = {
  functionName: "consumer",
  awsRequestId: "consumer-request",
  getRemainingTimeInMillis: () => 3_000,
} as unknown as Context;

function get(id: string): APIGatewayProxyEventV2 {
  const rawPath = \`/products/\${id}\`;
  return {
    version: "2.0",
    routeKey: "GET /products/{id}",
    rawPath,
    rawQueryString: "",
    headers: {},
    pathParameters: { id },
    requestContext: { http: { method: "GET", path: rawPath } },
    isBase64Encoded: false,
  } as unknown as APIGatewayProxyEventV2;
}

type Response = { statusCode: number; body?: string; headers?: Record<string, unknown> };
for (const id of ["42", "42", "7"]) {
  const response = (await handler(get(id), context)) as Response;
  const xCache = response.headers?.["x-cache"];
  console.log(JSON.stringify({ id, statusCode: response.statusCode, xCache, body: response.body }));
}
`;

// The plain client, no Middy: a round trip of every kind through the root entry, each request
// seen on the package's diagnostics_channel, and proof that the internals cannot be imported.
const clientSource = `import { tracingChannel } from "node:diagnostics_channel";
import {
  COMMAND_CHANNEL,
  type CommandContext,
  MemcacheClient,
  MemcacheIllegalInputError,
  safeKey,
} from "lambda-memcache";
import { CacheAside, cacheConfigFromEnv, clientStore } from "lambda-memcache/cache";

const commands: string[] = [];
tracingChannel<unknown, CommandContext>(COMMAND_CHANNEL).subscribe({
  start() {},
  end() {},
  asyncStart() {},
  asyncEnd: (context) => commands.push(\`\${context.command} \${context.outcome}\`),
  error() {},
});

const { newCluster, newConnection, timeoutMs, connectTimeoutMs } = cacheConfigFromEnv();
const client = new MemcacheClient({ ...newCluster, ...newConnection, timeoutMs, connectTimeoutMs });
const key = safeKey("consumer said hello", "consumer:");
await client.set(key, { from: "consumer" }, { ttlSeconds: 60 });
const value = await client.get<{ from: string }>(key);
const counter = await client.incr("consumer:counter", 5);
const cache = new CacheAside(clientStore(client));
const loaded = await cache.getOrLoad("consumer:loaded", async () => "from the loader");
let refused = "";
try {
  await client.get("has a space");
} catch (error) {
  if (error instanceof MemcacheIllegalInputError) refused = error.name;
}
const internal = "lambda-memcache/dist/memcache/connection.js";
const internalImport = await import(internal).then(
  () => "imported",
  (error: NodeJS.ErrnoException) => error.code ?? String(error),
);
console.log(JSON.stringify({ key, value, counter, loaded, refused, internalImport, commands }));
`;

export interface Consumer {
  dir: string;
  /** The README's "Use it in your service" block, as written to src/handler.ts. */
  handlerSource: string;
  /** Removes the project. */
  remove(): Promise<void>;
}

/**
 * This process's environment without what `npm test` / `npm run` set about this repository
 * (npm_package_*, npm_lifecycle_*, npm_config_local_prefix, ...): the consumer's npm must see
 * the consumer's project, while the user's npm settings (cache, registry) stay.
 */
function outsideThisPackage(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of Object.keys(env)) {
    if (/^npm_(package_|lifecycle_|command$|config_local_prefix$)/.test(name)) delete env[name];
  }
  return env;
}

/**
 * A new project in the temp folder with the tarball, @middy/core and @types/node installed
 * (from npm's cache when it has them: `npm ci` of this repo put them there).
 */
export async function createConsumer(tarball: Tarball): Promise<Consumer> {
  const dir = await mkdtemp(path.join(tmpdir(), "lambda-memcache-consumer-"));
  const remove = () => rm(dir, { recursive: true, force: true });
  try {
    const handler = await serviceHandlerBlock();
    const manifest = {
      name: "consumer",
      private: true,
      type: "module",
      dependencies: {
        "lambda-memcache": `file:${tarball.file}`,
        "@middy/core": await installedVersion("@middy/core"),
      },
      devDependencies: { "@types/node": await installedVersion("@types/node") },
    };
    await mkdir(path.join(dir, "src"));
    await Promise.all([
      writeFile(path.join(dir, "package.json"), `${JSON.stringify(manifest, null, 2)}\n`),
      writeFile(path.join(dir, "tsconfig.json"), `${JSON.stringify(tsconfig, null, 2)}\n`),
      writeFile(path.join(dir, "src", "middy-durable.d.ts"), middyDurableShim),
      writeFile(path.join(dir, "src", "handler.ts"), handler.code),
      writeFile(path.join(dir, "src", "invoke.ts"), invokeSource),
      writeFile(path.join(dir, "src", "client.ts"), clientSource),
    ]);
    await runOk(
      "npm",
      ["install", "--prefer-offline", "--no-audit", "--no-fund", "--ignore-scripts"],
      { cwd: dir, env: outsideThisPackage() },
    );
    return { dir, handlerSource: handler.code, remove };
  } catch (error) {
    await remove();
    throw error;
  }
}

/** This repository's TypeScript over the consumer's tsconfig: typecheck and emit to out/. */
export function compileConsumer(consumer: Consumer): Promise<RunResult> {
  const tsc = path.join(repoRoot, "node_modules", "typescript", "bin", "tsc");
  return run(process.execPath, [tsc, "-p", consumer.dir], { cwd: consumer.dir });
}

/** The files TypeScript loads to check `file` (one of src/) under the consumer's tsconfig. */
export async function consumerProgramFiles(consumer: Consumer, file: string): Promise<string[]> {
  const config = { extends: "./tsconfig.json", include: [], files: [file] };
  const configFile = path.join(consumer.dir, "tsconfig.one-file.json");
  await writeFile(configFile, `${JSON.stringify(config, null, 2)}\n`);
  const tsc = path.join(repoRoot, "node_modules", "typescript", "bin", "tsc");
  const { stdout } = await runOk(process.execPath, [tsc, "-p", configFile, "--listFilesOnly"], {
    cwd: consumer.dir,
  });
  return stdout.split("\n").filter((line) => line.trim() !== "");
}

export interface Bundle {
  file: string;
  bytes: number;
  /** Inputs by the bytes they put into the bundle, largest first. */
  inputs: Array<{ input: string; bytes: number }>;
}

/** The consumer's handler bundled for Lambda: minified ESM, the AWS SDK left to the runtime. */
export async function bundleConsumerHandler(consumer: Consumer): Promise<Bundle> {
  const file = path.join(consumer.dir, "bundle", "handler.mjs");
  const result = await build({
    absWorkingDir: consumer.dir,
    entryPoints: ["src/handler.ts"],
    outfile: file,
    bundle: true,
    minify: true,
    platform: "node",
    target: "node22",
    format: "esm",
    external: ["@aws-sdk/*"],
    metafile: true,
    logLevel: "silent",
  });
  const output = Object.values(result.metafile.outputs)[0];
  const inputs = Object.entries(output?.inputs ?? {})
    .map(([input, { bytesInOutput }]) => ({ input, bytes: bytesInOutput }))
    .sort((a, b) => b.bytes - a.bytes);
  return { file, bytes: (await stat(file)).size, inputs };
}
