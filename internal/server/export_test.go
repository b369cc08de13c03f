package server

import "sort"

// ECSOperations are the names of the ECS operations s serves.
func (s *Server) ECSOperations() []string {
	var names []string
	for n := range s.ecsOps() {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// EKSOperations are the names of the EKS operations s serves.
func (s *Server) EKSOperations() []string {
	var names []string
	for _, r := range s.eksRoutes() {
		names = append(names, r.op)
	}
	sort.Strings(names)
	return names
}
