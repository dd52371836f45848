// parseClusterConfig: the data block of an ElastiCache `config get cluster` reply, as documented
// by AWS, and the malformed blocks it must refuse (with MemcacheDiscoveryError) instead of applying.

import { describe, expect, it } from "vitest";
import { parseClusterConfig } from "../../../lib/memcache/discovery.ts";
import { MemcacheDiscoveryError } from "../../../lib/memcache/errors.ts";

function parse(text: string) {
  return parseClusterConfig(Buffer.from(text, "latin1"));
}

describe("parseClusterConfig on valid blocks", () => {
  it("parses the example from the ElastiCache documentation", () => {
    const config = parse(
      "12\nmyCluster.pc4ldq.0001.use1.cache.amazonaws.com|10.82.235.120|11211 myCluster.pc4ldq.0002.use1.cache.amazonaws.com|10.80.249.27|11211\n",
    );
    expect(config).toEqual({
      version: 12,
      nodes: [
        {
          host: "myCluster.pc4ldq.0001.use1.cache.amazonaws.com",
          port: 11211,
          ip: "10.82.235.120",
        },
        {
          host: "myCluster.pc4ldq.0002.use1.cache.amazonaws.com",
          port: 11211,
          ip: "10.80.249.27",
        },
      ],
    });
  });

  it("leaves out the ip when the IP field is empty, so the hostname is connected to", () => {
    const config = parse("3\nnode1.example.cache.amazonaws.com||11211\n");
    expect(config.nodes).toEqual([{ host: "node1.example.cache.amazonaws.com", port: 11211 }]);
    expect(config.nodes[0]).not.toHaveProperty("ip");
  });

  it("accepts an IPv6 address", () => {
    const config = parse("4\nnode1.example.com|2001:db8::17|11211\n");
    expect(config.nodes).toEqual([{ host: "node1.example.com", port: 11211, ip: "2001:db8::17" }]);
  });

  it("accepts TLS hostnames whose first label begins with digits", () => {
    const config = parse("5\n1abc.cache.amazonaws.com|10.0.0.1|11211\n");
    expect(config.nodes).toEqual([
      { host: "1abc.cache.amazonaws.com", port: 11211, ip: "10.0.0.1" },
    ]);
  });

  it("parses several nodes in order, with their own ports", () => {
    const config = parse(
      "7\na.example.com|10.0.0.1|11211 b.example.com|10.0.0.2|11212 c.example.com|10.0.0.3|1\n",
    );
    expect(config.version).toBe(7);
    expect(config.nodes.map((node) => `${node.host}|${node.ip}|${node.port}`)).toEqual([
      "a.example.com|10.0.0.1|11211",
      "b.example.com|10.0.0.2|11212",
      "c.example.com|10.0.0.3|1",
    ]);
  });

  it("accepts the highest port, 65535", () => {
    expect(parse("1\na.example.com|10.0.0.1|65535\n").nodes[0]!.port).toBe(65535);
  });
});

describe("parseClusterConfig refuses malformed blocks with MemcacheDiscoveryError", () => {
  const malformed: Array<[what: string, text: string, message: RegExp]> = [
    ["a missing trailing newline", "12\na.example.com|10.0.0.1|11211", /malformed/],
    [
      "an extra line",
      "12\na.example.com|10.0.0.1|11211\nb.example.com|10.0.0.2|11211\n",
      /malformed/,
    ],
    ["an empty extra line", "12\na.example.com|10.0.0.1|11211\n\n", /malformed/],
    ["a non-numeric version", "v12\na.example.com|10.0.0.1|11211\n", /version/],
    ["a negative version", "-1\na.example.com|10.0.0.1|11211\n", /version/],
    ["an empty version", "\na.example.com|10.0.0.1|11211\n", /version/],
    ["no nodes", "12\n\n", /no nodes/],
    ["only spaces for nodes", "12\n   \n", /no nodes/],
    ["port 0", "12\na.example.com|10.0.0.1|0\n", /node entry/],
    ["port 70000", "12\na.example.com|10.0.0.1|70000\n", /node entry/],
    ["port x", "12\na.example.com|10.0.0.1|x\n", /node entry/],
    ["an empty port", "12\na.example.com|10.0.0.1|\n", /node entry/],
    ["the bad IP 999.1.1.1", "12\na.example.com|999.1.1.1|11211\n", /node entry/],
    ['a "|" inside the hostname', "12\na|b.example.com|10.0.0.1|11211\n", /node entry/],
    ["a space inside the hostname", "12\nmy host.example.com|10.0.0.1|11211\n", /node entry/],
    ['an "_" in the hostname', "12\nmy_host.example.com|10.0.0.1|11211\n", /node entry/],
    ["an entry with two fields", "12\na.example.com|11211\n", /node entry/],
    ["an empty hostname", "12\n|10.0.0.1|11211\n", /node entry/],
  ];

  it.each(malformed)("refuses %s", (_what, text, message) => {
    expect(() => parse(text)).toThrow(MemcacheDiscoveryError);
    expect(() => parse(text)).toThrow(message);
  });

  it("refuses the whole block when one entry of several is malformed", () => {
    const text =
      "9\na.example.com|10.0.0.1|11211 b.example.com|10.0.0.2|0 c.example.com|10.0.0.3|11211\n";
    expect(() => parse(text)).toThrow(/"b\.example\.com\|10\.0\.0\.2\|0"/);
  });
});
