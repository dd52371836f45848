// The reference app end to end over HTTP, single-cluster phase, memcached in plain text: the
// suite in app-suite.ts (app-tls.test.ts runs it over TLS).

import { appSuite } from "./app-suite.ts";

appSuite("plain");
