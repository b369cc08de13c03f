package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// cachedBlob returns the path and size of lr's compressed blob if it is
// in the cache with the size the manifest declares and may be used
// (refetch is not set: the caller has nothing to prove to the registry).
func (s *Store) cachedBlob(lr layerRecord, refetch bool) (string, int64, bool) {
	if refetch {
		return "", 0, false
	}
	p, err := s.blobPath(lr.Digest)
	if err != nil {
		return "", 0, false
	}
	st, err := os.Stat(p)
	if err != nil || (lr.Size > 0 && st.Size() != lr.Size) {
		return "", 0, false
	}
	return p, st.Size(), true
}

// blobDownload is a layer blob being fetched. Reading it reads the
// registry's answer: every byte is hashed and written to a temporary file
// in the cache as it passes, so that the unpacker downstream works while
// the rest is still on its way. Nothing it has read is trusted until
// verify has checked the whole blob against its digest.
type blobDownload struct {
	digest  string
	size    int64 // declared by the manifest
	body    io.ReadCloser
	hr      *hashingReader
	f       *os.File // the blob, under tmp/ until commit
	dst     string   // where commit puts it
	onBytes func(int64)
	n       int64 // bytes read so far
	err     error // the first read or write error, io.EOF at the end
}

// fetchBlob starts fetching lr's compressed blob with fetch. The caller
// reads it, calls verify once the unpacker is done with it, then commit;
// discard (deferred) drops whatever was not committed.
func (s *Store) fetchBlob(ctx context.Context, lr layerRecord, fetch func() (io.ReadCloser, error), onBytes func(int64)) (*blobDownload, error) {
	dst, err := s.blobPath(lr.Digest)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(dst); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	body, err := fetch()
	if err != nil {
		return nil, fmt.Errorf("layer blob %s: %w", lr.Digest, err)
	}
	f, err := os.CreateTemp(s.tmpDir(), "blob-")
	if err != nil {
		body.Close()
		return nil, err
	}
	return &blobDownload{
		digest:  lr.Digest,
		size:    lr.Size,
		body:    body,
		hr:      newHashingReader(&ctxReader{ctx: ctx, r: body}),
		f:       f,
		dst:     dst,
		onBytes: onBytes,
	}, nil
}

func (d *blobDownload) Read(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	n, err := d.hr.Read(p)
	if n > 0 {
		d.n += int64(n)
		if _, werr := d.f.Write(p[:n]); werr != nil {
			d.err = fmt.Errorf("layer blob %s: write to the cache: %w", d.digest, werr)
			return 0, d.err
		}
		d.onBytes(int64(n))
	}
	if err != nil {
		d.err = err
	}
	return n, err
}

// verify reads what the unpacker left of the blob (a compressor's
// trailer, a tar's padding) and checks the whole against its digest. Its
// error names the blob and says whether the download broke off or the
// registry sent other content than the manifest names.
func (d *blobDownload) verify() error {
	if d.err == nil {
		io.Copy(io.Discard, d) // sets d.err: io.EOF at the end
	}
	got := d.hr.digest()
	if d.err != io.EOF && (d.size <= 0 || d.n < d.size) {
		return fmt.Errorf("layer blob %s: download stopped after %d of %d bytes: %w", d.digest, d.n, d.size, d.err)
	}
	if got != d.digest {
		return fmt.Errorf("layer blob %s: the registry sent %d bytes with digest %s instead; the corrupt or tampered download and what was unpacked of it are discarded", d.digest, d.n, got)
	}
	if d.err != io.EOF {
		// All the content, but the registry client saw something wrong
		// past it.
		return fmt.Errorf("layer blob %s: download: %w", d.digest, d.err)
	}
	return nil
}

// commit moves the verified blob into the cache. The caller has made it
// durable (syncfs).
func (d *blobDownload) commit() error {
	if err := d.f.Close(); err != nil {
		return fmt.Errorf("layer blob %s: %w", d.digest, err)
	}
	if err := os.Rename(d.f.Name(), d.dst); err != nil {
		return fmt.Errorf("layer blob %s: %w", d.digest, err)
	}
	return nil
}

// discard closes the registry's answer and removes the temporary file if
// it was not committed.
func (d *blobDownload) discard() {
	d.body.Close()
	d.f.Close()
	os.Remove(d.f.Name()) // after commit: no longer there
}
