package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
	"time"

	"github.com/kycbatch/kycbatch/internal/tracing"
)

// maxURLLength bounds an endpoint's URL.
const maxURLLength = 2048

// checkURL returns why raw cannot be an endpoint's URL, or nil: it must be an
// absolute http or https URL and, unless allowPrivate, every address its host
// resolves to must be public (so that a client cannot make us call into our
// own network). Delivery checks again at connect time (dialControl), since
// DNS may answer differently then.
func checkURL(ctx context.Context, raw string, allowPrivate bool) error {
	if raw == "" {
		return errors.New("url is required")
	}
	if len(raw) > maxURLLength {
		return fmt.Errorf("url must be at most %d characters", maxURLLength)
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return errors.New("url must be an absolute http or https URL")
	}
	if u.User != nil {
		return errors.New("url must not carry credentials")
	}
	if allowPrivate {
		return nil
	}
	host := u.Hostname()
	if ip, err := netip.ParseAddr(host); err == nil {
		if blocked(ip) {
			return fmt.Errorf("url must point at a public address, not %s", ip)
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return fmt.Errorf("url host %q could not be resolved", host)
	}
	for _, ip := range addrs {
		if blocked(ip) {
			return fmt.Errorf("url host %q resolves to %s, not a public address", host, ip.Unmap())
		}
	}
	return nil
}

// blocked reports whether ip is one we never call when private URLs are
// not allowed: any address that is not globally reachable.
func blocked(ip netip.Addr) bool {
	return !public(ip)
}

// public reports whether ip is globally reachable: not in a range of IANA's
// special-purpose address registries marked not globally reachable (the
// most specific range decides), not multicast, and, for the IPv6 forms
// that carry an IPv4 address (mapped, compatible, NAT64, 6to4, Teredo),
// only if that IPv4 address is public.
func public(ip netip.Addr) bool {
	ip = ip.Unmap()
	if ip.Is6() {
		if v4s := embedded(ip); v4s != nil {
			for _, v4 := range v4s {
				if !public(v4) {
					return false
				}
			}
			return true
		}
	}
	bits, global := -1, true
	for _, r := range specialPurpose {
		if r.prefix.Contains(ip) && r.prefix.Bits() > bits {
			bits, global = r.prefix.Bits(), r.global
		}
	}
	return global
}

// specialRange is a range of the special-purpose registries (or multicast).
type specialRange struct {
	prefix netip.Prefix
	global bool // globally reachable
	name   string
}

// specialPurpose is the IANA IPv4 and IPv6 Special-Purpose Address
// Registries (their "Globally Reachable" column; "N/A" taken as not),
// with multicast and IPv6 site-local added. The IPv6 forms that carry an
// IPv4 address are judged by it (embedded), not here.
var specialPurpose = func() []specialRange {
	ranges := []struct {
		prefix string
		global bool
		name   string
	}{
		{"0.0.0.0/8", false, "this network"},
		{"10.0.0.0/8", false, "private"},
		{"100.64.0.0/10", false, "shared address space"},
		{"127.0.0.0/8", false, "loopback"},
		{"169.254.0.0/16", false, "link local"},
		{"172.16.0.0/12", false, "private"},
		{"192.0.0.0/24", false, "IETF protocol assignments"},
		{"192.0.0.9/32", true, "port control protocol anycast"},
		{"192.0.0.10/32", true, "traversal using relays around NAT anycast"},
		{"192.0.2.0/24", false, "documentation (TEST-NET-1)"},
		{"192.88.99.0/24", false, "6to4 relay anycast (deprecated)"},
		{"192.168.0.0/16", false, "private"},
		{"198.18.0.0/15", false, "benchmarking"},
		{"198.51.100.0/24", false, "documentation (TEST-NET-2)"},
		{"203.0.113.0/24", false, "documentation (TEST-NET-3)"},
		{"224.0.0.0/4", false, "multicast"},
		{"240.0.0.0/4", false, "reserved"},
		{"255.255.255.255/32", false, "limited broadcast"},
		{"::/128", false, "unspecified"},
		{"::1/128", false, "loopback"},
		{"64:ff9b:1::/48", false, "local-use IPv4/IPv6 translation"},
		{"100::/64", false, "discard-only"},
		{"2001::/23", false, "IETF protocol assignments"},
		{"2001:1::1/128", true, "port control protocol anycast"},
		{"2001:1::2/128", true, "traversal using relays around NAT anycast"},
		{"2001:1::3/128", true, "DNS-SD service registration protocol anycast"},
		{"2001:3::/32", true, "AMT"},
		{"2001:4:112::/48", true, "AS112-v6"},
		{"2001:20::/28", true, "ORCHIDv2"},
		{"2001:30::/28", true, "drone remote ID protocol entity tags"},
		{"2001:db8::/32", false, "documentation"},
		{"3fff::/20", false, "documentation"},
		{"5f00::/16", false, "segment routing SIDs"},
		{"fc00::/7", false, "unique local"},
		{"fe80::/10", false, "link local"},
		{"fec0::/10", false, "site local (deprecated)"},
		{"ff00::/8", false, "multicast"},
	}
	list := make([]specialRange, len(ranges))
	for i, r := range ranges {
		list[i] = specialRange{prefix: netip.MustParsePrefix(r.prefix), global: r.global, name: r.name}
	}
	return list
}()

// Prefixes of the IPv6 forms that carry IPv4 addresses.
var (
	ipv4Compatible = netip.MustParsePrefix("::/96")
	nat64          = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour      = netip.MustParsePrefix("2002::/16")
	teredo         = netip.MustParsePrefix("2001::/32")
)

// embedded returns the IPv4 addresses an IPv6 address carries (nil when it
// is no such form): the last 32 bits of an IPv4-compatible or NAT64
// address, bits 16–47 of 6to4, and Teredo's server (bits 32–63) and client
// (the last 32 bits, inverted).
func embedded(ip netip.Addr) []netip.Addr {
	b := ip.As16()
	v4 := func(at int, invert bool) netip.Addr {
		var a [4]byte
		copy(a[:], b[at:at+4])
		if invert {
			for i := range a {
				a[i] = ^a[i]
			}
		}
		return netip.AddrFrom4(a)
	}
	switch {
	case ipv4Compatible.Contains(ip), nat64.Contains(ip):
		return []netip.Addr{v4(12, false)}
	case sixToFour.Contains(ip):
		return []netip.Addr{v4(2, false)}
	case teredo.Contains(ip):
		return []netip.Addr{v4(4, false), v4(12, true)}
	}
	return nil
}

// dialControl refuses, at connect time, the addresses checkURL refuses: a
// host whose DNS answer changed since the endpoint was registered (DNS
// rebinding) is caught here.
func dialControl(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("webhook: unexpected dial address %q", address)
	}
	if blocked(ap.Addr()) {
		return fmt.Errorf("webhook: refusing to connect to %s: not a public address", ap.Addr().Unmap())
	}
	return nil
}

// deliveryTimeout bounds one POST to an endpoint.
const deliveryTimeout = 10 * time.Second

// newHTTPClient returns the client deliveries use: a 10 s timeout, no
// redirects followed, no proxy (a proxy would connect for us, past the
// address check), and, unless allowPrivate, public addresses only.
func newHTTPClient(allowPrivate bool) *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	if !allowPrivate {
		dialer.Control = dialControl
	}
	return &http.Client{
		Timeout: deliveryTimeout,
		// A client span per delivery while tracing is on, its URL only the
		// scheme and host: an endpoint's path and query may be its secret.
		Transport: tracing.HostOnlyTransport(&http.Transport{
			DialContext:           dialer.DialContext,
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: deliveryTimeout,
			MaxIdleConnsPerHost:   2,
			IdleConnTimeout:       90 * time.Second,
		}),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
