"""Network primitives: netns, bridge, veth, IPAM, nftables, VXLAN, embedded DNS."""
