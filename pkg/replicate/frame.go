package replicate

import (
	"bufio"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// maxFrameLen bounds a frame's length field (sealed bytes, tag included).
const maxFrameLen = 1 << 20

// maxHelloLen bounds a handshake frame.
const maxHelloLen = 1024

var (
	errFrameTooLarge = errors.New("frame too large")
	errOpen          = errors.New("frame failed authentication")
)

// newAEAD returns AES-GCM for a 16, 24 or 32-byte key.
func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// frameWriter seals frames for one direction of one connection:
//
//	length u32 big endian | AES-GCM(plaintext, nonce = 0^4 | counter u64, aad = length)
//
// The counter starts at 0 for each direction's fresh key and is never
// reused; a reordered, replayed or truncated frame fails to open.
type frameWriter struct {
	w    *bufio.Writer
	aead cipher.AEAD
	ctr  uint64
	buf  []byte
}

func (f *frameWriter) write(plain []byte) error {
	n := len(plain) + f.aead.Overhead()
	if n > maxFrameLen {
		return fmt.Errorf("%w: %d bytes", errFrameTooLarge, n)
	}
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(n))
	var nonce [12]byte
	binary.BigEndian.PutUint64(nonce[4:], f.ctr)
	f.ctr++
	if cap(f.buf) < 4+n {
		f.buf = make([]byte, 0, 4+n)
	}
	b := append(f.buf[:0], hdr[:]...)
	b = f.aead.Seal(b, nonce[:], plain, hdr[:])
	_, err := f.w.Write(b)
	return err
}

// frameReader opens frames written by a frameWriter with the same key.
type frameReader struct {
	r    *bufio.Reader
	aead cipher.AEAD
	ctr  uint64
	buf  []byte
}

// read returns the next frame's plaintext, valid until the next call. Any
// error is fatal for the connection.
func (f *frameReader) read() ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(f.r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[:]))
	if n > maxFrameLen || n < f.aead.Overhead()+1 {
		return nil, fmt.Errorf("%w: length %d", errFrameTooLarge, n)
	}
	if cap(f.buf) < n {
		f.buf = make([]byte, n)
	}
	b := f.buf[:n]
	if _, err := io.ReadFull(f.r, b); err != nil {
		return nil, err
	}
	var nonce [12]byte
	binary.BigEndian.PutUint64(nonce[4:], f.ctr)
	f.ctr++
	plain, err := f.aead.Open(b[:0], nonce[:], b, hdr[:])
	if err != nil {
		return nil, errOpen
	}
	return plain, nil
}

// writePlain writes an unsealed handshake frame: length u32 | bytes.
func writePlain(w *bufio.Writer, b []byte) error {
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(b)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		return err
	}
	return w.Flush()
}

// readPlain reads an unsealed handshake frame of at most max bytes.
func readPlain(r *bufio.Reader, max int) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[:]))
	if n > max {
		return nil, fmt.Errorf("%w: handshake length %d", errFrameTooLarge, n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}
