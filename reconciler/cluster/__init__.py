"""The multi-host store on etcd: hosts, subnet leases, endpoints."""
