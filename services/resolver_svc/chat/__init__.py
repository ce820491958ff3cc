"""The chat gateway: prepare a chat (model, credential, upstream target),
send it upstream unary or streamed, probe a provider. Domain values in and
out; resolver_svc.upstream does the HTTP."""
