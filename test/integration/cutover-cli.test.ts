// `npm run cutover -- status` as a command, against a fake AWS endpoint (AWS_ENDPOINT_URL): it
// takes the region the SDK resolves (here from a profile's config, as `aws` does), prints the
// region and account it looked in (STS GetCallerIdentity), and turns missing region, missing
// credentials and refused credentials into one line saying what to set. The fake answers STS and
// ElastiCache in their query protocol (XML), Lambda's ListFunctions in JSON (no functions), and
// records the region each request was signed for.

import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listenOnLoopback } from "../../tools/ports.ts";

const projectRoot = path.resolve(import.meta.dirname, "../..");
const account = "123456789012";
const arn = `arn:aws:iam::${account}:user/ops`;

interface FakeAws {
  url: string;
  /** Each request's Action and the region its signature is for. */
  requests: Array<{ action: string; region: string }>;
  /** "ok", or the error code STS answers GetCallerIdentity with. */
  sts: "ok" | "ExpiredToken";
  close(): Promise<void>;
}

async function startFakeAws(): Promise<FakeAws> {
  const requests: FakeAws["requests"] = [];
  const fake: Partial<FakeAws> = { requests, sts: "ok" };
  const server = http.createServer((request, response) => {
    let body = "";
    request.setEncoding("utf8");
    request.on("data", (chunk: string) => {
      body += chunk;
    });
    request.on("end", () => {
      // Lambda speaks REST with JSON: its ListFunctions is a GET of /2015-03-31/functions/.
      const lambda = request.url?.startsWith("/2015-03-31/functions") === true;
      const action = lambda ? "ListFunctions" : (new URLSearchParams(body).get("Action") ?? "?");
      const region = /Credential=[^/]+\/[0-9]+\/([^/]+)\//.exec(
        String(request.headers.authorization),
      )?.[1];
      requests.push({ action, region: region ?? "?" });
      if (lambda) {
        response.writeHead(200, { "content-type": "application/json" });
        response.end(JSON.stringify({ Functions: [] }));
        return;
      }
      const [status, xml] = answer(action, fake.sts!);
      response.writeHead(status, { "content-type": "text/xml" });
      response.end(xml);
    });
  });
  const address = await listenOnLoopback(server as unknown as import("node:net").Server);
  return Object.assign(fake, {
    url: `http://${address.endpoint}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }) as FakeAws;
}

const error = (code: string, message: string): [number, string] => [
  code === "ExpiredToken" ? 403 : 404,
  `<ErrorResponse><Error><Type>Sender</Type><Code>${code}</Code><Message>${message}</Message></Error><RequestId>r1</RequestId></ErrorResponse>`,
];

function answer(action: string, sts: FakeAws["sts"]): [number, string] {
  switch (action) {
    case "GetCallerIdentity":
      if (sts !== "ok") return error(sts, "The security token included in the request is expired");
      return [
        200,
        `<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult><Arn>${arn}</Arn><UserId>AIDAEXAMPLE</UserId><Account>${account}</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>r1</RequestId></ResponseMetadata></GetCallerIdentityResponse>`,
      ];
    case "DescribeCacheClusters":
      return error("CacheClusterNotFound", "CacheCluster not found");
    case "DescribeServerlessCaches":
      return error("ServerlessCacheNotFoundFault", "Serverless cache not found");
    default:
      return error("InvalidAction", action);
  }
}

let aws: FakeAws;
let home: string;

beforeAll(async () => {
  aws = await startFakeAws();
  home = await mkdtemp(path.join(os.tmpdir(), "cutover-cli-"));
  await writeFile(
    path.join(home, "config"),
    "[profile ops]\nregion = eu-west-3\n\n[profile noregion]\n",
  );
  await writeFile(
    path.join(home, "credentials"),
    "[ops]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = secret\n\n[noregion]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = secret\n",
  );
  await writeFile(path.join(home, "empty"), "");
});

afterAll(async () => {
  await aws?.close();
  if (home) await rm(home, { recursive: true, force: true });
});

/** Runs `npm run cutover -- status --stage ci [args]` with only the AWS settings given here. */
function status(
  env: Record<string, string>,
  args: string[] = [],
): Promise<{ code: number; out: string; err: string }> {
  const clean: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: home };
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [path.join(projectRoot, "infra/cutover.ts"), "status", "--stage", "ci", ...args],
      {
        cwd: projectRoot,
        env: {
          ...clean,
          AWS_ENDPOINT_URL: aws.url,
          AWS_EC2_METADATA_DISABLED: "true",
          AWS_CONFIG_FILE: path.join(home, "config"),
          AWS_SHARED_CREDENTIALS_FILE: path.join(home, "credentials"),
          ...env,
        },
        timeout: 30_000,
      },
      (failure, stdout, stderr) => {
        const code = failure ? (typeof failure.code === "number" ? failure.code : 1) : 0;
        resolve({ code, out: stdout, err: stderr });
      },
    );
  });
}

describe("npm run cutover -- status", () => {
  it("takes the region from the profile and prints the region and account it looked in", async () => {
    aws.sts = "ok";
    aws.requests.length = 0;
    const { code, out, err } = await status({ AWS_PROFILE: "ops" });
    expect(err).toBe("");
    expect(code).toBe(0);
    expect(out.split("\n")[0]).toBe(
      `lambda-memcache, stage ci, region eu-west-3, account ${account} (${arn})`,
    );
    expect(out).toMatch(/^verdict: new cluster lambda-memcache-ci-new not present/m);
    expect(out).toContain("deployed versions and their phase:\n  (none found)");
    expect(aws.requests.map((r) => r.action).sort()).toEqual([
      "DescribeCacheClusters",
      "DescribeCacheClusters",
      "DescribeServerlessCaches",
      "DescribeServerlessCaches",
      "GetCallerIdentity",
      "ListFunctions",
    ]);
    expect(new Set(aws.requests.map((r) => r.region))).toEqual(new Set(["eu-west-3"]));
  });

  it("prefers --region over the profile's", async () => {
    aws.requests.length = 0;
    const { code, out } = await status({ AWS_PROFILE: "ops" }, ["--region", "ap-south-2"]);
    expect(code).toBe(0);
    expect(out.split("\n")[0]).toContain("region ap-south-2,");
    expect(new Set(aws.requests.map((r) => r.region))).toEqual(new Set(["ap-south-2"]));
  });

  it("says in one line what to set when there is no region", async () => {
    const { code, out, err } = await status({ AWS_PROFILE: "noregion" });
    expect(code).toBe(1);
    expect(out).toBe("");
    expect(err).toBe(
      "cutover status: no AWS region: pass --region, or set AWS_REGION (or a region in the config of AWS_PROFILE)\n",
    );
  });

  it("says in one line what to set when there are no credentials", async () => {
    const { code, err } = await status({
      AWS_REGION: "eu-west-3",
      AWS_SHARED_CREDENTIALS_FILE: path.join(home, "empty"),
      AWS_CONFIG_FILE: path.join(home, "empty"),
    });
    expect(code).toBe(1);
    expect(err.split("\n").filter(Boolean)).toHaveLength(1);
    expect(err).toMatch(
      /^cutover status: no usable AWS credentials \(CredentialsProviderError: .*\): set AWS_PROFILE .*AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/,
    );
  });

  it("says in one line what to set when AWS refuses the credentials (expired)", async () => {
    aws.sts = "ExpiredToken";
    try {
      const { code, err } = await status({ AWS_PROFILE: "ops" });
      expect(code).toBe(1);
      expect(err.split("\n").filter(Boolean)).toHaveLength(1);
      expect(err).toMatch(/^cutover status: no usable AWS credentials \(ExpiredToken: /);
    } finally {
      aws.sts = "ok";
    }
  });
});
