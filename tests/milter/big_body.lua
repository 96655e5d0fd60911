-- Bodies over the protocol's 64 KB chunk: a 320 KB clean message, then one
-- whose EICAR line comes after 300 KB of text (so the whole body reached
-- the scanner).
-- Run with -D port=PORT.
local conn = mt.connect("inet:" .. port .. "@127.0.0.1")
assert(conn, "cannot connect to mxgate's milter")
assert(mt.negotiate(conn, nil, nil, nil) == nil)
assert(mt.conninfo(conn, "client.sender.test", "192.0.2.12") == nil)
assert(mt.getreply(conn) == SMFIR_CONTINUE, "connect")

local line = string.rep("0123456789abcdefghijklmnopqrstuvwxyz", 2) .. "\r\n"
local chunk = string.rep(line, 800)   -- 59,200 bytes: under the 65,535 a chunk may hold

local function message(mid, tail)
  assert(mt.mailfrom(conn, "<big@sender.test>") == nil)
  assert(mt.getreply(conn) == SMFIR_CONTINUE, "mail")
  assert(mt.rcptto(conn, "<bob@example.com>") == nil)
  assert(mt.getreply(conn) == SMFIR_CONTINUE, "rcpt")
  assert(mt.header(conn, "From", "big@sender.test") == nil)
  assert(mt.header(conn, "Message-ID", mid) == nil)
  assert(mt.eoh(conn) == nil)
  for i = 1, 5 do assert(mt.bodystring(conn, chunk) == nil) end
  assert(mt.bodyrandom(conn, 20000) == nil)
  assert(mt.bodystring(conn, tail) == nil)
  assert(mt.eom(conn) == nil)
end

message("<big-clean@sender.test>", "The end.\r\n")
assert(mt.getreply(conn) == SMFIR_ACCEPT, "a large clean message is accepted")
message("<big-eicar@sender.test>", "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*\r\n")
assert(mt.getreply(conn) == SMFIR_REPLYCODE, "EICAR after 300 KB is found")
assert(mt.disconnect(conn) == nil)
mt.echo("big body: ok")
