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
			return fmt.Errorf("url must not point at a loopback, private, link-local, unspecified or multicast address (%s)", ip)
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
			return fmt.Errorf("url host %q resolves to %s: a loopback, private, link-local, unspecified or multicast address", host, ip.Unmap())
		}
	}
	return nil
}

// sharedAddressSpace is 100.64.0.0/10 (carrier-grade NAT), private in all but name.
var sharedAddressSpace = netip.MustParsePrefix("100.64.0.0/10")

// blocked reports whether ip is one we never call when private URLs are not allowed.
func blocked(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() || sharedAddressSpace.Contains(ip)
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
		Transport: &http.Transport{
			DialContext:           dialer.DialContext,
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: deliveryTimeout,
			MaxIdleConnsPerHost:   2,
			IdleConnTimeout:       90 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
