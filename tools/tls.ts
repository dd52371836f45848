// Creates a throwaway certificate authority and a server certificate for memcached.test,
// localhost and 127.0.0.1 with the openssl CLI, so TLS tests verify real certificates.

import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { ensureOpenssl } from "./binaries.ts";

const execFileAsync = promisify(execFile);

export interface TestCertificates {
  /** Directory holding every file below. */
  dir: string;
  /** CA certificate to trust (PEM file). */
  caFile: string;
  /** CA certificate to trust (PEM text), for `tls.connect({ ca })`. */
  caPem: string;
  /** Server certificate signed by the CA (PEM file). */
  certFile: string;
  /** Server private key, unencrypted (PEM file). */
  keyFile: string;
  /** Name the server certificate is issued for: "memcached.test". */
  serverName: string;
}

const serverName = "memcached.test";
const validDays = "2";
// EC keys are generated in milliseconds, RSA 2048 in up to a second.
const newKey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

// Own config files, so neither the system openssl.cnf nor its defaults matter.
const caConfig = `[req]
distinguished_name = dn
prompt = no
x509_extensions = ca_ext
[dn]
CN = test CA
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
`;

const serverRequestConfig = `[req]
distinguished_name = dn
prompt = no
[dn]
CN = ${serverName}
`;

// OpenSSL 3.0 does not copy extensions from the request, so the SAN goes in via -extfile.
const serverExtensions = `basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:${serverName}, DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
`;

/** Writes a fresh CA and server certificate into `dir` (default: a new temp directory). */
export async function makeTestCertificates(dir?: string): Promise<TestCertificates> {
  const openssl = await ensureOpenssl();
  if (dir) await mkdir(dir, { recursive: true });
  const outDir = dir ?? (await mkdtemp(path.join(os.tmpdir(), "memcached-tls-")));
  const file = (name: string) => path.join(outDir, name);

  await Promise.all([
    writeFile(file("ca.cnf"), caConfig),
    writeFile(file("server-req.cnf"), serverRequestConfig),
    writeFile(file("server.ext"), serverExtensions),
  ]);

  const run = (args: string[]) => execFileAsync(openssl, args, { cwd: outDir });
  await run([
    ...["req", "-x509", "-config", file("ca.cnf"), ...newKey],
    ...["-keyout", file("ca.key"), "-out", file("ca.pem"), "-days", validDays],
  ]);
  await run([
    ...["req", "-new", "-config", file("server-req.cnf"), ...newKey],
    ...["-keyout", file("server.key"), "-out", file("server.csr")],
  ]);
  await run([
    ...["x509", "-req", "-in", file("server.csr"), "-out", file("server.pem")],
    ...["-CA", file("ca.pem"), "-CAkey", file("ca.key"), "-CAcreateserial"],
    ...["-extfile", file("server.ext"), "-days", validDays],
  ]);

  return {
    dir: outDir,
    caFile: file("ca.pem"),
    caPem: await readFile(file("ca.pem"), "utf8"),
    certFile: file("server.pem"),
    keyFile: file("server.key"),
    serverName,
  };
}
