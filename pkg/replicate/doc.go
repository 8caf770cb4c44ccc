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
// The handshake is Noise_NNpsk0_25519_AESGCM_SHA256 (the Noise Protocol
// Framework, revision 34, implemented by github.com/flynn/noise), with
// PSK = HKDF-SHA256(cluster key, info "tandem/replicate/v2 noise psk")
// and the clear header "TDMR" | 2 as the prologue. Its two messages are
// length-prefixed (u32, at most 1 KiB):
//
//	S→R "TDMR" | 2 | e | AES-GCM(node)   psk, e
//	R→S e | AES-GCM(node)                e, ee
//
// Why this pattern: both nodes hold only the shared cluster key, no key
// pair of their own, which is what the NN pattern with a pre-shared key
// is for (XX or KK would need static keys, and static keys derived from
// one shared secret would be the same on both sides, proving nothing
// more). psk0 mixes the key in before the first message, so the
// receiver refuses a stranger after one AEAD open, before doing any
// Diffie-Hellman or sending a byte, and tells which of its keys the
// sender used (it tries each; see SetKeys). ee gives every connection
// fresh keys and forward secrecy. Noise binds the protocol name and the
// prologue into every key, so the suite cannot be negotiated down and a
// rewritten or stripped header fails authentication.
//
// What the receiver knows after the first message is only that someone
// once held the key: the message may be a replay. The sender's first
// transport frame, CONFIG{config hash}, is the proof: it is sealed with
// keys that need the sender's ephemeral private key, so a replayed hello
// is refused there ("auth"). R answers STATE{config hash, epoch, seq}.
// The sender is sure of the receiver once the second message opens. A
// node refuses a peer that names it (its own handshake reflected back),
// and each direction has its own key, so a frame reflected to its sealer
// does not open. A differing config hash is refused on both sides
// (logged as an error, counted, Status NOT SYNCED), as is a hello under
// none of the receiver's keys ("auth"), an old protocol version or
// anything malformed ("handshake"). The receiver answers none of these:
// a sender whose hello was refused sees the connection close.
//
// The dialer sends with its primary key; the receiver accepts any key
// it holds, so a rotation works whichever box reloads first.
//
// # Frames
//
//	length u32 | AES-GCM(type | body, nonce = 0^4 | counter u64, aad = length)
//
// sealed with the handshake's two cipher states (Noise's Split), one per
// direction, with the cipher state's counter from 0, and length at most
// 1 MiB. That is Noise's transport phase with the length as associated
// data and frames longer than Noise's 65535 bytes (AES-GCM is defined
// far beyond; one frame carries a batch of 4096 entries). The transport
// keys come from Split, never from the handshake hash, which is public.
// A frame that fails to open, is too large or is malformed drops the
// connection and is counted ("bad_frame"); the sender reconnects.
//
//	UPDATE     S→R  seq uvarint | entries
//	BULK_BEGIN S→R  epoch u64 | kind (0 full, 1 resume)
//	BULK_BATCH S→R  entries
//	BULK_END   S→R  entries in the bulk uvarint
//	PING       S→R  (sent when idle for a heartbeat)
//	BLOB       S→R  name | data: a named document (blob.go)
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
