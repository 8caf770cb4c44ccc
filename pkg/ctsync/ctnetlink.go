package ctsync

// ctnetlink message types and attributes (uapi nfnetlink_conntrack.h).
// ti-mo/conntrack keeps its copies unexported and has no NAT attributes,
// so the messages that create entries are built here.
const (
	msgCTNew    = 0 // IPCTNL_MSG_CT_NEW
	msgCTGet    = 1 // IPCTNL_MSG_CT_GET
	msgCTDelete = 2 // IPCTNL_MSG_CT_DELETE
	msgCTStats  = 5 // IPCTNL_MSG_CT_GET_STATS

	ctaTupleOrig  = 1
	ctaTupleReply = 2
	ctaStatus     = 3
	ctaProtoInfo  = 4
	ctaNATSrc     = 6
	ctaTimeout    = 7
	ctaMark       = 8
	ctaNATDst     = 13
	ctaZone       = 18
	ctaMarkMask   = 21

	ctaTupleIP    = 1
	ctaTupleProto = 2

	ctaIPv4Src = 1
	ctaIPv4Dst = 2
	ctaIPv6Src = 3
	ctaIPv6Dst = 4

	ctaProtoNum     = 1
	ctaProtoSrcPort = 2
	ctaProtoDstPort = 3

	ctaProtoInfoTCP         = 1
	ctaProtoInfoTCPState    = 1
	ctaProtoInfoTCPWScaleO  = 2
	ctaProtoInfoTCPWScaleR  = 3
	ctaProtoInfoTCPFlagsO   = 4
	ctaProtoInfoTCPFlagsR   = 5
	ctaNATv4MinIP           = 1
	ctaNATv4MaxIP           = 2
	ctaNATProto             = 3
	ctaNATv6MinIP           = 4
	ctaNATv6MaxIP           = 5
	ctaProtoNATPortMin      = 1
	ctaProtoNATPortMax      = 2
	defaultCreateTimeoutSec = 120
)
