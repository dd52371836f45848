// The reference app end to end over HTTP, single-cluster phase, over TLS: the suite in
// app-suite.ts against a memcached that serves TLS only (-Z, a certificate from a test CA), with
// the functions told CACHE_NEW_TLS=true and CACHE_TLS_CA_FILE as `npm run dev` does with
// CACHE_TLS=1. A function speaking plain text to it would get no answer, and every test fails.

import { appSuite } from "./app-suite.ts";

appSuite("tls");
