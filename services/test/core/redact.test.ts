import { describe, expect, test } from "bun:test";
import { hasRedactedPassword, isSensitiveHeader, redactHeaders, redactUrl } from "@evently/core/redact.ts";

describe("redactUrl", () => {
  test("replaces only the password; a url without one comes back unchanged", () => {
    expect(redactUrl("https://user:pass@hooks.example.com/a?b=c#d")).toBe("https://user:[redacted]@hooks.example.com/a?b=c#d");
    expect(redactUrl("https://user:p%3A%40@hooks.example.com:8443/")).toBe("https://user:[redacted]@hooks.example.com:8443/");
    expect(redactUrl("https://:pass@hooks.example.com/")).toBe("https://:[redacted]@hooks.example.com/");
    for (const url of ["https://user@hooks.example.com/", "https://hooks.example.com/x?token=in-query"]) expect(redactUrl(url)).toBe(url);
  });

  test("a string the URL parser refuses still loses its password", () => {
    expect(redactUrl("http://user:pass@bad host/x")).toBe("http://user:[redacted]@bad host/x");
  });

  test("the marker is recognised when read back, literal or percent-encoded, and nothing else is", () => {
    expect(hasRedactedPassword(redactUrl("https://u:p@h.example/"))).toBe(true);
    expect(hasRedactedPassword("https://u:%5Bredacted%5D@h.example/")).toBe(true);
    for (const url of ["https://u:p@h.example/", "https://u@h.example/", "https://u:%zz@h.example/", "not a url"]) {
      expect(hasRedactedPassword(url)).toBe(false);
    }
  });
});

describe("sensitive headers", () => {
  test("credential-like names are redacted, others kept", () => {
    for (const name of ["authorization", "proxy-authorization", "cookie", "x-api-key", "x-api_key", "apikey", "x-auth-token", "x-client-secret", "x-password", "x-hub-signature"]) {
      expect([name, isSensitiveHeader(name)]).toEqual([name, true]);
    }
    expect(redactHeaders({ Authorization: "Bearer t", "x-tenant": "acme" })).toEqual({ Authorization: "[redacted]", "x-tenant": "acme" });
  });
});
