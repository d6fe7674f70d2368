"""Everything that touches etcd: keys, membership, the partition map.

Only this package imports aetcd/gRPC; it turns their errors into
`ClusterError` / `ClusterConnectionError` at its border.
"""
