// Finds the memcached and openssl binaries that tests, benchmarks and the local stack need, the
// Python clients the interop tests run against (Debian's python3-pymemcache and python3-pylibmc
// under /usr/bin/python3) and the Chromium the live view's browser test drives, installing them
// with apt-get where that is possible (root on Debian/Ubuntu), and otherwise failing with a
// one-line instruction.
// `npm run ensure-memcached` checks the machine.

import { execFile, spawn } from "node:child_process";
import { constants } from "node:fs";
import { access } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

/** Where package managers put binaries even when PATH (e.g. under sudo or cron) misses them. */
const extraDirs = ["/usr/bin", "/usr/local/bin", "/opt/homebrew/bin"];

interface Tool {
  /** Name of the executable. */
  binary: string;
  /** Debian/Ubuntu package that provides it. */
  aptPackage: string;
  /** Homebrew formula that provides it. */
  brewFormula: string;
}

const memcachedTool: Tool = {
  binary: "memcached",
  aptPackage: "memcached",
  brewFormula: "memcached",
};
const opensslTool: Tool = { binary: "openssl", aptPackage: "openssl", brewFormula: "openssl" };
const chromiumTool: Tool = {
  binary: "chromium",
  aptPackage: "chromium",
  brewFormula: "--cask chromium",
};

// One look-up (and at most one install) per tool per process, however many callers ask.
const found = new Map<string, Promise<string>>();

/** Returns the path of the memcached binary, installing it with apt-get when running as root. */
export function ensureMemcached(): Promise<string> {
  return ensureTool(memcachedTool);
}

/** Returns the path of the openssl binary, installing it with apt-get when running as root. */
export function ensureOpenssl(): Promise<string> {
  return ensureTool(opensslTool);
}

/** Returns the path of Debian's chromium (headless browser tests), installing it when root. */
export function ensureChromium(): Promise<string> {
  return ensureTool(chromiumTool);
}

/** The Python the interop tests run: the system one, where apt-get puts the client modules. */
export const PYTHON = "/usr/bin/python3";
const pythonPackages = ["python3-pymemcache", "python3-pylibmc"];

/**
 * Makes sure `${PYTHON}` can import pymemcache and pylibmc, installing Debian's packages with
 * apt-get when running as root. Resolves with the Python path.
 */
export function ensurePythonClients(): Promise<string> {
  let result = found.get("python-clients");
  if (!result) {
    result = locateOrInstallPythonClients();
    result.catch(() => found.delete("python-clients"));
    found.set("python-clients", result);
  }
  return result;
}

async function locateOrInstallPythonClients(): Promise<string> {
  const imports = () => execFileAsync(PYTHON, ["-c", "import pymemcache, pylibmc"]);
  try {
    await imports();
    return PYTHON;
  } catch {
    // Not installed (or no Python at all): install below where we can.
  }
  const aptGet = await findExecutable("apt-get");
  if (process.getuid?.() === 0 && aptGet) {
    await run(aptGet, ["update", "-qq"]);
    await run(aptGet, ["install", "-y", "-qq", ...pythonPackages]);
    await imports();
    return PYTHON;
  }
  throw new Error(
    `the Python memcached clients are not installed: run \`sudo apt-get install -y ${pythonPackages.join(" ")}\` (Debian/Ubuntu)`,
  );
}

function ensureTool(tool: Tool): Promise<string> {
  let result = found.get(tool.binary);
  if (!result) {
    result = locateOrInstall(tool);
    // A failed attempt is not cached, so a later call may succeed after a manual install.
    result.catch(() => found.delete(tool.binary));
    found.set(tool.binary, result);
  }
  return result;
}

async function locateOrInstall(tool: Tool): Promise<string> {
  const existing = await findExecutable(tool.binary);
  if (existing) return existing;

  const aptGet = await findExecutable("apt-get");
  if (process.getuid?.() === 0 && aptGet) {
    await run(aptGet, ["update", "-qq"]);
    await run(aptGet, ["install", "-y", "-qq", tool.aptPackage]);
    const installed = await findExecutable(tool.binary);
    if (installed) return installed;
  }

  throw new Error(
    `${tool.binary} is not installed: run \`sudo apt-get install -y ${tool.aptPackage}\` (Debian/Ubuntu) or \`brew install ${tool.brewFormula}\` (macOS)`,
  );
}

async function findExecutable(binary: string): Promise<string | undefined> {
  const pathDirs = (process.env.PATH ?? "").split(path.delimiter).filter(Boolean);
  for (const dir of new Set([...pathDirs, ...extraDirs])) {
    const candidate = path.join(dir, binary);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not in this directory; keep looking.
    }
  }
  return undefined;
}

/** Runs a command with its output sent to our stderr, so stdout stays free for results. */
function run(command: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      stdio: ["ignore", process.stderr, process.stderr],
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    });
    child.on("error", reject);
    child.on("exit", (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`${command} ${args.join(" ")} failed (${signal ?? `exit ${code}`})`));
    });
  });
}
