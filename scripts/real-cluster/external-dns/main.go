// ExternalDNS for the DNS failover lab: only the DNSEndpoint CRD source, the rfc2136 provider and
// the registries, wired from sigs.k8s.io/external-dns's own packages.
//
// Why not ExternalDNS's main: its provider factory (imported by its controller package) links
// every provider, and the module proxy refuses some of their pinned dependencies (see go.mod).
// This binary accepts ExternalDNS's own flags (pkg/apis/externaldns), refuses any --provider
// but rfc2136, and runs its own copy-free loop over ExternalDNS's registry and plan packages:
// every --interval, and (with --events) soon after a DNSEndpoint changes, at most once per
// --min-event-sync-interval.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	log "github.com/sirupsen/logrus"
	"k8s.io/klog/v2"
	crlog "sigs.k8s.io/controller-runtime/pkg/log"

	"sigs.k8s.io/external-dns/endpoint"
	"sigs.k8s.io/external-dns/pkg/apis/externaldns"
	"sigs.k8s.io/external-dns/pkg/apis/externaldns/validation"
	"sigs.k8s.io/external-dns/plan"
	"sigs.k8s.io/external-dns/provider"
	"sigs.k8s.io/external-dns/provider/rfc2136"
	"sigs.k8s.io/external-dns/registry"
	registryfactory "sigs.k8s.io/external-dns/registry/factory"
	"sigs.k8s.io/external-dns/source"
	"sigs.k8s.io/external-dns/source/annotations"
	"sigs.k8s.io/external-dns/source/wrappers"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Errorf("external-dns (lab): %v", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	cfg := externaldns.NewConfig()
	if err := cfg.ParseFlags(os.Args[1:]); err != nil {
		return fmt.Errorf("flags: %w", err)
	}
	if err := validation.ValidateConfig(cfg); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if cfg.Provider != externaldns.ProviderRFC2136 {
		return fmt.Errorf("this build links only the rfc2136 provider, not %q", cfg.Provider)
	}
	for _, s := range cfg.Sources {
		if s != "crd" {
			return fmt.Errorf("this build is meant for --source=crd only, not %q", s)
		}
	}
	annotations.SetAnnotationPrefix(cfg.AnnotationPrefix)
	if level, err := log.ParseLevel(cfg.LogLevel); err == nil {
		log.SetLevel(level)
	}
	if log.GetLevel() < log.DebugLevel {
		klog.SetLogger(logr.Discard())
	}
	crlog.SetLogger(logr.Discard())
	log.Infof("external-dns (lab build of %s): sources %v, provider %s, registry %s, interval %s",
		moduleVersion(), cfg.Sources, cfg.Provider, cfg.Registry, cfg.Interval)

	sCfg, err := source.NewSourceConfig(cfg)
	if err != nil {
		return err
	}
	src, err := wrappers.Build(ctx, sCfg)
	if err != nil {
		return err
	}
	domainFilter := endpoint.NewDomainFilterWithOptions(
		endpoint.WithDomainFilter(cfg.DomainFilter),
		endpoint.WithDomainExclude(cfg.DomainExclude),
		endpoint.WithRegexDomainFilter(cfg.RegexDomainFilter),
		endpoint.WithRegexDomainExclude(cfg.RegexDomainExclude),
	)
	prov, err := rfc2136.New(ctx, cfg, domainFilter)
	if err != nil {
		return err
	}
	reg, err := registryfactory.Select(cfg, prov)
	if err != nil {
		return err
	}
	policy, ok := plan.Policies[cfg.Policy]
	if !ok {
		return fmt.Errorf("unknown policy %q", cfg.Policy)
	}

	wake := make(chan struct{}, 1)
	if cfg.UpdateEvents {
		src.AddEventHandler(ctx, func() {
			select {
			case wake <- struct{}{}:
			default:
			}
		})
	}
	var last time.Time
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
			// An event: run now, but at most once per --min-event-sync-interval.
			if wait := time.Until(last.Add(cfg.MinEventSyncInterval)); wait > 0 {
				timer.Reset(wait)
				continue
			}
		case <-timer.C:
		}
		last = time.Now()
		if err := syncOnce(ctx, cfg, src, reg, policy, domainFilter); err != nil {
			if !errors.Is(err, provider.SoftError) {
				return err
			}
			log.Errorf("sync failed (soft error, retried next interval): %v", err)
		}
		timer.Reset(cfg.Interval)
	}
}

// syncOnce: the records the registry owns, the endpoints the source wants, ExternalDNS's plan
// between them, applied through the registry.
func syncOnce(ctx context.Context, cfg *externaldns.Config, src source.Source, reg registry.Registry,
	policy plan.Policy, domainFilter *endpoint.DomainFilter) error {
	current, err := reg.Records(ctx)
	if err != nil {
		return fmt.Errorf("registry records: %w", err)
	}
	ctx = context.WithValue(ctx, provider.RecordsContextKey, current)
	wanted, err := src.Endpoints(ctx)
	if err != nil {
		return fmt.Errorf("source endpoints: %w", err)
	}
	desired, err := reg.AdjustEndpoints(wanted)
	if err != nil {
		return fmt.Errorf("adjusting endpoints: %w", err)
	}
	p := (&plan.Plan{
		Policies:       []plan.Policy{policy},
		Current:        current,
		Desired:        desired,
		DomainFilter:   endpoint.MatchAllDomainFilters{domainFilter, reg.GetDomainFilter()},
		ManagedRecords: cfg.ManagedDNSRecordTypes,
		ExcludeRecords: cfg.ExcludeDNSRecordTypes,
		OwnerID:        reg.OwnerID(),
		OldOwnerID:     cfg.TXTOwnerOld,
	}).Calculate()
	if !p.Changes.HasChanges() {
		log.Debug("all records are up to date")
		return nil
	}
	if err := reg.ApplyChanges(ctx, p.Changes); err != nil {
		return fmt.Errorf("applying changes: %w", err)
	}
	log.Infof("applied: %d create, %d update, %d delete",
		len(p.Changes.Create), len(p.Changes.UpdateNew), len(p.Changes.Delete))
	return nil
}

// moduleVersion: the sigs.k8s.io/external-dns version this binary was built from.
func moduleVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == "sigs.k8s.io/external-dns" {
				return m.Path + " " + m.Version
			}
		}
	}
	return "sigs.k8s.io/external-dns (unknown version)"
}
