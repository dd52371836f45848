// Tests start memcached through the same launcher as the local stack.
export * from "../../infra/local/memcached.ts";
