// The origin the cache stands in front of (the demo origin locally, the user's API in AWS).

const originUrl = (process.env.ORIGIN_URL ?? "http://127.0.0.1:4000").replace(/\/+$/, "");
const timeoutMs = Number(process.env.ORIGIN_TIMEOUT_MS ?? 5000);

export interface OriginResponse {
  status: number;
  body: string;
}

async function call(method: string, path: string, body?: string): Promise<OriginResponse> {
  const response = await fetch(`${originUrl}${path}`, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body,
    signal: AbortSignal.timeout(timeoutMs),
  });
  return { status: response.status, body: await response.text() };
}

export function getProduct(id: string): Promise<OriginResponse> {
  return call("GET", `/products/${encodeURIComponent(id)}`);
}

export function putProduct(id: string, body: string): Promise<OriginResponse> {
  return call("PUT", `/products/${encodeURIComponent(id)}`, body);
}
