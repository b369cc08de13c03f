// Package tlsutil keeps Vessel's small certificate authorities and the
// serving certificates they issue: the control plane's API (its data
// directory's tls/), the hosts' agent endpoints, and the Kubernetes
// bridge's webhook and kubelet API. It also computes the SubjectPublicKeyInfo
// hash that join tokens pin (as kubeadm's --discovery-token-ca-cert-hash
// does) and builds the tls.Config of clients that trust one CA only.
//
// It imports nothing of Vessel but fsutil.
//
//	ca, _ := tlsutil.LoadOrCreateCA(dir, "vessel-ca")
//	srv, _ := tlsutil.LoadServing(tlsutil.ServingConfig{CA: ca, Dir: dir, Hosts: []string{"10.0.0.1"}})
//	httpSrv.TLSConfig = &tls.Config{GetCertificate: srv.GetCertificate}
//	fmt.Println(tlsutil.SPKIHash(ca.Cert)) // sha256:...
package tlsutil
