-- An MTA that offers less: only the right to add headers, no reply to
-- headers and body chunks, header values with their leading space, and
-- to leave HELO out. mxgate takes what it can use and still asks for HELO
-- (its policy reads it; miltertest then sends one of its own). Run with
-- -D port=PORT.
local conn = mt.connect("inet:" .. port .. "@127.0.0.1")
assert(conn, "cannot connect to mxgate's milter")
local steps = SMFIP_NOHELO + SMFIP_NR_HDR + SMFIP_NR_EOH + SMFIP_NR_BODY + SMFIP_HDR_LEADSPC
-- miltertest takes the steps before the actions (its manual says otherwise).
assert(mt.negotiate(conn, 6, steps, SMFIF_ADDHDRS) == nil, "option negotiation failed")
assert(mt.test_action(conn, SMFIF_ADDHDRS), "adding headers is taken")
assert(not mt.test_action(conn, SMFIF_CHGHDRS), "changing headers was not offered")
assert(mt.test_option(conn, SMFIP_NR_HDR) and mt.test_option(conn, SMFIP_NR_BODY), "no replies to headers and body")
assert(not mt.test_option(conn, SMFIP_NOHELO), "mxgate still wants HELO")

assert(mt.conninfo(conn, "client.sender.test", "192.0.2.11") == nil)
assert(mt.getreply(conn) == SMFIR_CONTINUE, "connect")
assert(mt.mailfrom(conn, "<a@sender.test>") == nil)
assert(mt.getreply(conn) == SMFIR_CONTINUE, "mail")
assert(mt.rcptto(conn, "<bob@example.com>") == nil)
assert(mt.getreply(conn) == SMFIR_CONTINUE, "rcpt")
assert(mt.header(conn, "From", " a@sender.test") == nil)
assert(mt.header(conn, "Subject", " fewer steps") == nil)
assert(mt.header(conn, "Authentication-Results", " mx.test.example; spf=pass smtp.mailfrom=forged.test") == nil)
assert(mt.eoh(conn) == nil)
assert(mt.bodystring(conn, "Nothing to see.\r\n") == nil)
assert(mt.eom(conn) == nil)
assert(mt.getreply(conn) == SMFIR_ACCEPT, "accepted")
assert(mt.eom_check(conn, MT_HDRINSERT, "Authentication-Results"), "ours is inserted")
assert(not mt.eom_check(conn, MT_HDRDELETE), "nothing is removed without the right to change headers")
local ar = mt.getheader(conn, "Authentication-Results", 0)
assert(ar and string.sub(ar, 1, 1) == " ", "with leading space negotiated, our value brings its own: " .. tostring(ar))

-- Not offered the quarantine: a message the policy holds is kept at the client (451), not delivered.
assert(mt.mailfrom(conn, "<a@sender.test>") == nil)
assert(mt.getreply(conn) == SMFIR_CONTINUE, "mail 2")
assert(mt.rcptto(conn, "<bob@example.com>") == nil)
assert(mt.getreply(conn) == SMFIR_CONTINUE, "rcpt 2")
assert(mt.header(conn, "Subject", " hold me") == nil)
assert(mt.eoh(conn) == nil)
assert(mt.bodystring(conn, "Held.\r\n") == nil)
assert(mt.eom(conn) == nil)
assert(mt.getreply(conn) == SMFIR_REPLYCODE, "tempfailed")
assert(mt.eom_check(conn, MT_SMTPREPLY, "451", "4.7.1", "Message held for review, try again later"))
assert(mt.disconnect(conn) == nil)
mt.echo("fewer steps: ok")
