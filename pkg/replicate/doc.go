// Package replicate streams sticky-table updates between the two nodes of
// the pair: reliable, encrypted, in order, with a full bulk for a node that
// joins or rejoins, and a Status that says whether the pair is in sync.
//
// It knows nothing about elections or the dataplane: the node wires a
// Store over its sticky tables, calls Publish on the accept path, and
// reads Status and BulkReceived for "warm before master".
//
// # Connections
//
// Each node listens on Config.Listen and dials the peer's. A node sends
// its own updates on the connection it dialed (it is that connection's
// sender, S) and receives the peer's updates on the connection it
// accepted (it is the receiver, R). The receiver sends only ACKs back. A
// new authenticated connection from the peer replaces an older one.
//
// # Handshake
//
// Handshake frames are length-prefixed (u32, at most 1 KiB) and not
// encrypted:
//
//	S→R hello_s = "TDMR" | version | nonce[32] | node
//	R→S hello_r | HMAC(Ka, "server hello", hello_s, hello_r)
//	S→R HMAC(Ka, "client finished", hello_s, hello_r|mac)
//
// Ka = HKDF-SHA256(cluster key, info "auth"). During a key rotation a node
// holds several keys: R MACs with its primary key, S accepts a MAC under
// any key it holds and continues with that one, so the connection's keys
// derive from a key both hold. Both nonces are fresh, so
// each MAC proves the other side holds the key now: a peer without the key
// cannot connect, replay or inject. Each direction then gets its own
// AES-256-GCM key, HKDF-SHA256(cluster key, salt nonce_s|nonce_r, info
// naming the direction). S sends a sealed CONFIG{config hash}; R answers
// STATE{config hash, epoch, seq}. A differing config hash is refused on
// both sides (logged as an error, counted, Status NOT SYNCED), as is a
// wrong key ("auth") or anything malformed ("handshake").
//
// # Frames
//
//	length u32 | AES-GCM(type | body, nonce = 0^4 | counter u64, aad = length)
//
// with a per-direction counter from 0, and length at most 1 MiB. A frame
// that fails to open, is too large or is malformed drops the connection
// and is counted ("bad_frame"); the sender reconnects.
//
//	UPDATE     S→R  seq uvarint | entries
//	BULK_BEGIN S→R  epoch u64 | kind (0 full, 1 resume)
//	BULK_BATCH S→R  entries
//	BULK_END   S→R  entries in the bulk uvarint
//	PING       S→R  (sent when idle for a heartbeat)
//	ACK        R→S  epoch u64 | seq uvarint
//
// Entries are packed back to back: cluster uvarint, prefix tag (IPv4 bits,
// 64+IPv6 bits) and the address's significant bytes, server uvarint,
// zigzag varint of Expires minus the previous entry's: about 10 bytes an
// IPv4 entry.
//
// # Stream, epochs and resume
//
// A sender's stream is a full bulk followed by UPDATE frames numbered
// 1, 2, … within an epoch, a random number chosen at each full bulk. The
// receiver applies UPDATEs strictly in sequence and acknowledges each; it
// remembers (epoch, last seq) across connections and reports it in STATE.
// The sender keeps every unacknowledged UPDATE; on reconnect, if the
// receiver's epoch is the current one and every update it lacks is still
// kept, it resends them between BULK_BEGIN(resume) and BULK_END.
// Otherwise (first connection, the peer restarted, the receiver was cut
// mid-bulk, or updates were discarded) it sends a full bulk of the Store.
// Either way nothing is lost across a broken connection.
//
// Publish appends to a bounded queue and never blocks. The sender sends
// what is queued once the oldest entry has waited BatchDelay (or a frame's
// worth, 4096 entries, is queued), and stops taking more while 256 frames
// are unacknowledged. If the queue overflows (a slow or long-gone peer)
// it is discarded, the drop counted ("queue_overflow"), and a full bulk is
// sent as soon as the peer is reachable: Publish then discards until that
// bulk starts, because the bulk's snapshot covers those entries.
//
// A bulk runs Snapshot in its own goroutine into buffered frames, so the
// Store's iteration never waits for the network; updates published from
// the moment the bulk starts are queued and follow it.
//
// The receiver only applies; it never deletes. Entries carry absolute
// expiry times, so stale ones on the receiver expire by themselves.
package replicate
