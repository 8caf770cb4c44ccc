package replicate

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/flynn/noise"
)

// maxFrameLen bounds a frame's length field (sealed bytes, tag included).
const maxFrameLen = 1 << 20

// maxHelloLen bounds a handshake frame.
const maxHelloLen = 1024

var (
	errFrameTooLarge = errors.New("frame too large")
	errOpen          = errors.New("frame failed authentication")
)

// tagLen is the AES-GCM tag each sealed frame carries.
const tagLen = 16

// frameWriter seals frames for one direction of one connection with that
// direction's Noise cipher state (the handshake's Split):
//
//	length u32 big endian | AES-GCM(plaintext, nonce = 0^4 | n u64, aad = length)
//
// n is the cipher state's counter: 0 for the first frame after the
// handshake, never reused; a reordered, replayed or truncated frame fails
// to open. This is Noise's transport phase with two choices of ours: the
// length prefix is the associated data, and a frame may exceed Noise's
// 65535-byte message (up to maxFrameLen; AES-GCM is defined far beyond).
type frameWriter struct {
	w   *bufio.Writer
	cs  *noise.CipherState
	buf []byte
}

func (f *frameWriter) write(plain []byte) error {
	n := len(plain) + tagLen
	if n > maxFrameLen {
		return fmt.Errorf("%w: %d bytes", errFrameTooLarge, n)
	}
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(n))
	if cap(f.buf) < 4+n {
		f.buf = make([]byte, 0, 4+n)
	}
	b, err := f.cs.Encrypt(append(f.buf[:0], hdr[:]...), hdr[:], plain)
	if err != nil {
		return err
	}
	_, err = f.w.Write(b)
	return err
}

// frameReader opens frames written by a frameWriter with the same key.
type frameReader struct {
	r   *bufio.Reader
	cs  *noise.CipherState
	buf []byte
}

// read returns the next frame's plaintext, valid until the next call. Any
// error is fatal for the connection.
func (f *frameReader) read() ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(f.r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[:]))
	if n > maxFrameLen || n < tagLen+1 {
		return nil, fmt.Errorf("%w: length %d", errFrameTooLarge, n)
	}
	if cap(f.buf) < n {
		f.buf = make([]byte, n)
	}
	b := f.buf[:n]
	if _, err := io.ReadFull(f.r, b); err != nil {
		return nil, err
	}
	plain, err := f.cs.Decrypt(b[:0], hdr[:], b)
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
