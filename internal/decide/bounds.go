package decide

import (
	"fmt"
	"unicode/utf8"
)

// Bounds limit what one request may carry, so a hostile or broken client cannot make
// the service allocate, hash or store without bound. A violation is an ErrInvalid
// (gRPC InvalidArgument) whose message names the bound.
//
// Entry values have no bound of their own: they come from clients (a header, an API
// key), and refusing a request for one would be an error that Envoy answers with its
// failure mode, by default letting the request through past every limit. The gRPC
// message size bounds them; a long value is matched as it is, and the storage key that
// holds it is hashed past --max-key-length.
type Bounds struct {
	MaxDescriptors int // descriptors per request
	MaxEntries     int // entries per descriptor
	MaxKeyLen      int // bytes of one entry key
	MaxDomainLen   int // bytes of the domain
	// MaxCost bounds hits_addend: a larger cost (a descriptor's own, else the
	// request's) counts as MaxCost (Decider.cost); it is not refused.
	MaxCost uint64
}

// DefaultBounds are generous for every Envoy configuration seen in practice.
var DefaultBounds = Bounds{
	MaxDescriptors: 64,
	MaxEntries:     32,
	MaxKeyLen:      256,
	MaxDomainLen:   256,
	MaxCost:        1<<32 - 1,
}

// check returns the first bound req violates, or nil. Keys, values and the domain
// must be valid UTF-8: they become metric labels and log fields.
func (b *Bounds) check(req *Request) error {
	if len(req.Domain) > b.MaxDomainLen {
		return fmt.Errorf("%w: domain is %d bytes, above the bound of %d", ErrInvalid, len(req.Domain), b.MaxDomainLen)
	}
	if !utf8.ValidString(req.Domain) {
		return fmt.Errorf("%w: domain is not valid UTF-8", ErrInvalid)
	}
	if len(req.Descriptors) > b.MaxDescriptors {
		return fmt.Errorf("%w: %d descriptors, above the bound of %d per request", ErrInvalid, len(req.Descriptors), b.MaxDescriptors)
	}
	for i := range req.Descriptors {
		if err := b.checkDescriptor(i, &req.Descriptors[i]); err != nil {
			return err
		}
	}
	return nil
}

func (b *Bounds) checkDescriptor(i int, d *Descriptor) error {
	if len(d.Entries) > b.MaxEntries {
		return fmt.Errorf("%w: descriptor %d has %d entries, above the bound of %d", ErrInvalid, i, len(d.Entries), b.MaxEntries)
	}
	for j, e := range d.Entries {
		switch {
		case e.Key == "":
			return fmt.Errorf("%w: descriptor %d entry %d: empty key", ErrInvalid, i, j)
		case len(e.Key) > b.MaxKeyLen:
			return fmt.Errorf("%w: descriptor %d entry %d: key is %d bytes, above the bound of %d", ErrInvalid, i, j, len(e.Key), b.MaxKeyLen)
		case !utf8.ValidString(e.Key) || !utf8.ValidString(e.Value):
			return fmt.Errorf("%w: descriptor %d entry %d: key or value is not valid UTF-8", ErrInvalid, i, j)
		}
	}
	return nil
}
