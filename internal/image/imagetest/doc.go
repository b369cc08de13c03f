// Package imagetest holds what the image benchmarks share: layers of
// random content that gzip cannot shrink, and the download of an image's
// blobs alone, the baseline a pull is measured against. Only _test.go
// files import it; it imports go-containerregistry and klauspost/compress,
// nothing of Vessel's.
//
//	l, err := imagetest.RandomLayer(1, 100<<20, 10)
//	start := time.Now()
//	err = imagetest.DownloadBlobs(ref, image.DefaultConcurrency)
//	baseline := time.Since(start)
package imagetest
