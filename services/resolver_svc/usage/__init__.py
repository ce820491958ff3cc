"""Usage and spend on the resolver: the ledger that delivers one usage
record per upstream chat to config_svc, the meter that builds those records,
and the spend book (users' pushed spend) the limit checks read."""
