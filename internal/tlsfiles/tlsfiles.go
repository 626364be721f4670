// Package tlsfiles serves TLS material from PEM files and reads a file again when it
// changes, so that a rotated certificate or CA bundle (cert-manager, a mounted
// Kubernetes Secret) is used at the next handshake without a restart.
//
// A file is looked at (one stat) at each handshake, which long-lived gRPC and Redis
// connections make rare, and at each Status, which a Registry's metrics ask for at
// every scrape; a change is a new size, modification time or file identity (device
// and inode, where the platform has them: fileID), or new content, which is read
// again at most once a second (see watched.version). A change that does not load (a
// half-written file, a key that does not match its certificate) is reported once and
// the previous material is kept, so that a bad rotation does not take a working
// service down; it is tried again every ten seconds.
//
// The files are read as regular files of at most maxFile bytes, opened without waiting
// (readFile): anything else at the path (a FIFO, a directory, a device, the wrong file)
// is refused with its name, at load or as a change that does not load, rather than
// hanging the start or, holding the lock every handshake needs, every handshake.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/regularfile"
)

// watched remembers which version of some files is in use, and which version failed
// to load, so that a failed change is reported once rather than at every handshake.
type watched struct {
	mu             sync.Mutex
	loaded, failed string // versions, as version names them
	failedAt       time.Time
	last           look
	log            *slog.Logger
}

// look is what version last found: the files' state (as stats names it), the digests
// of their content then, and when those were taken.
type look struct {
	stats, digests string
	at             time.Time
}

// retryFailed is how long a version that failed to load is left alone before it is
// tried again: a repair that the version does not show (a file whose reading failed for
// a reason outside it, such as a mount's error) is seen then. A variable for tests.
var retryFailed = 10 * time.Second

// rehashEvery is how often files whose size, time and identity have not changed are
// read again to compare their content. A variable for tests.
var rehashEvery = time.Second

// version names the files' state by their sizes, modification times and identities
// (stats), and their content (digests), or says why one cannot be read (err is then
// that reason). stats and err are what stats returned, taken before mu is held, as
// the handshake path's only cost when the files are unchanged. Callers hold mu.
//
// Size, time and identity miss a file rewritten in place with the same size and its
// time put back (`cp -p` onto it, a secret-sync tool that keeps times) or within one
// tick of a coarse filesystem clock; the content shows those. But the files are looked
// at on the handshake path, so they are read only when their stats changed or the last
// read is rehashEvery old: at most once a second for unchanged files, whatever the
// rate of handshakes and scrapes; a rewrite that keeps stats is seen at the first look
// a second or more after the last read.
func (w *watched) version(stats string, err error, files ...string) (string, error) {
	if err != nil {
		return stats, err
	}
	if stats != w.last.stats || time.Since(w.last.at) >= rehashEvery {
		w.last = look{stats: stats, digests: digests(files), at: time.Now()}
	}
	return stats + w.last.digests, nil
}

// stats names the files' sizes, modification times and identities (fileID), or says
// why one cannot be read (err is then that reason).
func stats(files ...string) (string, error) {
	var b strings.Builder
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			return "unreadable: " + err.Error(), err
		}
		fmt.Fprintf(&b, "%d@%d#%s;", st.Size(), st.ModTime().UnixNano(), fileID(st))
	}
	return b.String(), nil
}

// due reports whether version v is worth loading: not the one in use, and not one that
// failed lately. The files being back at the version in use (a bad change undone)
// ends a failure. Callers hold mu.
func (w *watched) due(v string) bool {
	if v == w.loaded {
		w.failed = ""
		return false
	}
	return v != w.failed || time.Since(w.failedAt) >= retryFailed
}

// fail records that version v of the files named by what did not load, and reports
// it the first time. Callers hold mu.
func (w *watched) fail(v, what string, err error) {
	if v != w.failed && w.log != nil {
		w.log.Warn("a changed TLS file did not load; the previous one stays in use", "files", what, "error", err)
	}
	w.failed, w.failedAt = v, time.Now()
}

// use records that version v is in use. Callers hold mu.
func (w *watched) use(v string) { w.loaded, w.failed = v, "" }

// Status is what an operator is told about files in use (see Registry).
type Status struct {
	// Failing is true while the files have changed and do not load, so that the
	// previous material is still in use.
	Failing bool
	// NotAfter is when the certificate in use expires; zero for a CA bundle.
	NotAfter time.Time
}

// KeyPair is a certificate and its private key, each in a PEM file.
type KeyPair struct {
	certFile, keyFile string
	w                 watched
	cert              *tls.Certificate
}

// LoadKeyPair reads the pair; log (may be nil) hears of later changes that fail to
// load.
func LoadKeyPair(certFile, keyFile string, log *slog.Logger) (*KeyPair, error) {
	k := &KeyPair{certFile: certFile, keyFile: keyFile, w: watched{log: log}}
	st, err := stats(certFile, keyFile)
	v, err := k.w.version(st, err, certFile, keyFile)
	if err != nil {
		return nil, err
	}
	c, err := loadKeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	k.cert = &c
	k.w.use(v)
	return k, nil
}

// Certificate returns the pair as the files now hold it, or the last pair that loaded.
func (k *KeyPair) Certificate() *tls.Certificate {
	c, _ := k.current()
	return c
}

// current is Certificate, and whether changed files failed to load, as one snapshot.
func (k *KeyPair) current() (cert *tls.Certificate, failing bool) {
	st, err := stats(k.certFile, k.keyFile)
	k.w.mu.Lock()
	defer k.w.mu.Unlock()
	v, err := k.w.version(st, err, k.certFile, k.keyFile)
	if !k.w.due(v) {
		return k.cert, k.w.failed != ""
	}
	var c tls.Certificate
	if err == nil {
		c, err = loadKeyPair(k.certFile, k.keyFile)
	}
	if err != nil {
		k.w.fail(v, k.certFile+", "+k.keyFile, err)
		return k.cert, true
	}
	k.cert = &c
	k.w.use(v)
	if k.w.log != nil && c.Leaf != nil {
		k.w.log.Info("a changed TLS certificate was loaded", "files", k.certFile+", "+k.keyFile,
			"subject", c.Leaf.Subject.String(), "not_after", c.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return k.cert, false
}

// Status looks at the files, loading them if they changed, and reports on the pair in
// use.
func (k *KeyPair) Status() Status {
	c, failing := k.current()
	s := Status{Failing: failing}
	if c.Leaf != nil {
		s.NotAfter = c.Leaf.NotAfter
	}
	return s
}

// ForServer is a tls.Config's GetCertificate.
func (k *KeyPair) ForServer(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return k.Certificate(), nil
}

// ForClient is a tls.Config's GetClientCertificate.
func (k *KeyPair) ForClient(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return k.Certificate(), nil
}

// Pool is a bundle of CA certificates in a PEM file.
type Pool struct {
	file string
	w    watched
	pool *x509.CertPool
}

// LoadPool reads the bundle; log (may be nil) hears of later changes that fail to
// load.
func LoadPool(file string, log *slog.Logger) (*Pool, error) {
	p := &Pool{file: file, w: watched{log: log}}
	st, err := stats(file)
	v, err := p.w.version(st, err, file)
	if err != nil {
		return nil, err
	}
	if p.pool, err = readPool(file); err != nil {
		return nil, err
	}
	p.w.use(v)
	return p, nil
}

func readPool(file string) (*x509.CertPool, error) {
	pem, err := readFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate found", file)
	}
	return pool, nil
}

// Current returns the bundle as the file now holds it, or the last one that loaded.
func (p *Pool) Current() *x509.CertPool {
	pool, _ := p.current()
	return pool
}

// current is Current, and whether a changed file failed to load, as one snapshot.
func (p *Pool) current() (_ *x509.CertPool, failing bool) {
	st, err := stats(p.file)
	p.w.mu.Lock()
	defer p.w.mu.Unlock()
	v, err := p.w.version(st, err, p.file)
	if !p.w.due(v) {
		return p.pool, p.w.failed != ""
	}
	var pool *x509.CertPool
	if err == nil {
		pool, err = readPool(p.file)
	}
	if err != nil {
		p.w.fail(v, p.file, err)
		return p.pool, true
	}
	p.pool = pool
	p.w.use(v)
	if p.w.log != nil {
		p.w.log.Info("a changed CA bundle was loaded", "file", p.file)
	}
	return p.pool, false
}

// Status looks at the file, loading it if it changed, and reports on the bundle.
func (p *Pool) Status() Status {
	_, failing := p.current()
	return Status{Failing: failing}
}

// Registry lists the TLS files a process uses, each under the name of its use
// ("grpc_server", "redis_ca"), so that metrics can report them. The zero value is
// ready; a nil *Registry takes nothing.
type Registry struct {
	mu      sync.Mutex
	entries []entry
}

type entry struct {
	use   string
	files interface{ Status() Status }
}

// Add lists files (a *KeyPair or a *Pool) under use, in place of what use listed.
func (r *Registry) Add(use string, files interface{ Status() Status }) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.entries {
		if r.entries[i].use == use {
			r.entries[i].files = files
			return
		}
	}
	r.entries = append(r.entries, entry{use, files})
}

// Each calls f with every use and its files' status, looking at the files (see
// KeyPair.Status), in the order they were added.
func (r *Registry) Each(f func(use string, s Status)) {
	if r == nil {
		return
	}
	r.mu.Lock()
	entries := slices.Clone(r.entries)
	r.mu.Unlock()
	for _, e := range entries {
		f(e.use, e.files.Status())
	}
}

// VerifyClients makes the server configuration cfg require a client certificate
// signed by a CA of p as the file holds it at each handshake. cfg must not be changed
// afterwards.
func VerifyClients(cfg *tls.Config, p *Pool) {
	cfg.ClientAuth = tls.RequireAndVerifyClientCert
	cfg.ClientCAs = p.Current()
	base := cfg.Clone()
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := base.Clone()
		c.ClientCAs = p.Current()
		return c, nil
	}
}

// VerifyServers makes the client configuration cfg verify servers against p as the
// file holds it at each handshake, the way crypto/tls verifies against RootCAs: the
// chain up to a CA of p, for server authentication, naming name (normally
// cfg.ServerName; a client that fills ServerName in on its own copy of cfg, as gRPC
// does from its target, passes the name it will use), or, when that is empty, the name
// the handshake sent. crypto/tls has no hook that supplies roots per handshake, so its
// own check is turned off and this one takes its place. It does nothing to a
// configuration that skips verification, and reports whether it took effect.
func VerifyServers(cfg *tls.Config, p *Pool, name string) bool {
	return verifyAtHandshakes(cfg, p, func(cs tls.ConnectionState, roots *x509.CertPool) error {
		return verifyServer(cs, roots, name)
	})
}

// VerifyServerChains is VerifyServers without the name check, for a server reached by
// an address its certificate does not name (an IP address, a service alias): the
// chain up to a CA of p as the file holds it at each handshake (the system roots when
// p is nil), for server authentication and within its validity, whatever names the
// certificate carries. It never accepts a certificate of another CA. crypto/tls
// always checks the name, so its check is turned off and this one takes its place. It
// does nothing to a configuration that skips verification, and reports whether it
// took effect.
func VerifyServerChains(cfg *tls.Config, p *Pool) bool {
	return verifyAtHandshakes(cfg, p, func(cs tls.ConnectionState, roots *x509.CertPool) error {
		return verifyChain(cs, roots, "")
	})
}

// verifyAtHandshakes has cfg check each server with check, against p's CAs as the file
// holds them at that handshake (nil p: the system roots), in place of crypto/tls's own
// check, which reads RootCAs once and always checks the name. It leaves a configuration
// that skips verification alone, and reports whether it took effect.
func verifyAtHandshakes(cfg *tls.Config, p *Pool, check func(tls.ConnectionState, *x509.CertPool) error) bool {
	if cfg.InsecureSkipVerify {
		return false
	}
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		var roots *x509.CertPool // nil: x509 verifies against the system roots
		if p != nil {
			roots = p.Current()
		}
		return check(cs, roots)
	}
	return true
}

func verifyServer(cs tls.ConnectionState, roots *x509.CertPool, name string) error {
	if name == "" {
		name = cs.ServerName
	}
	if name == "" {
		// x509 skips the name check for an empty name: never accept that silently.
		return errors.New("tls: no server name to verify the server's certificate against")
	}
	return verifyChain(cs, roots, name)
}

// verifyChain verifies the server's certificate through the chain it sent up to roots,
// for server authentication, and that it names name; an empty name skips that check
// alone (VerifyServerChains).
func verifyChain(cs tls.ConnectionState, roots *x509.CertPool, name string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tls: the server sent no certificate")
	}
	opts := x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: x509.NewCertPool()}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(opts)
	return err
}

// maxFile bounds a certificate, key or CA bundle file: a system-wide CA bundle is some
// 200 kB, and a file far larger is the wrong path, not material to load.
const maxFile = 16 << 20

// readFile reads a certificate, key or CA bundle file (regularfile.Read): a FIFO at
// the path must not block the loading, which a handshake waits on.
func readFile(file string) ([]byte, error) {
	return regularfile.Read(file, maxFile)
}

// loadKeyPair is tls.LoadX509KeyPair, reading the files with readFile.
func loadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := readFile(certFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := readFile(keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}
