// Package kubernetes holds leitstand's Kubernetes manifests as kustomize
// bases, overlays and components, and the tests that prove them without a
// cluster: every overlay is built with kustomize's own library (krusty, as
// `kubectl apply -k` does), every object is decoded strictly into its
// Kubernetes (or prometheus-operator) type, the hardening and the agreement
// between Services, NetworkPolicies, probes and the daemon's own config are
// checked, the embedded configs pass `leitstand check`, and the rendered
// manifests are golden files (testdata/rendered, refreshed with -update).
//
// The package has no code of its own: the manifests are the product.
package kubernetes
