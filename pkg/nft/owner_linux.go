//go:build linux

package nft

import (
	"errors"
	"fmt"

	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// ownerComment marks the table as Tandem's (the table's userdata comment,
// shown by `nft list table inet tandem`). google/nftables v0.3.0 cannot
// write or read table userdata, so these two messages are built here.
const ownerComment = "managed by tandem: rewritten on every change, do not edit"

// nftaTableUserdata is NFTA_TABLE_USERDATA (kernel 5.10+; not in x/sys).
const nftaTableUserdata = 6

// udataTableComment is NFTNL_UDATA_TABLE_COMMENT.
const udataTableComment = 0

func nfgen(family uint8, resID uint16) []byte {
	return []byte{family, unix.NFNETLINK_V0, byte(resID >> 8), byte(resID)}
}

// tableComment returns whether the inet table exists and its comment.
func tableComment(c *netlink.Conn, name string) (found bool, comment string, err error) {
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_TABLE_NAME, Data: []byte(name + "\x00")},
	})
	if err != nil {
		return false, "", err
	}
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETTABLE),
			Flags: netlink.Request,
		},
		Data: append(nfgen(unix.NFPROTO_INET, 0), attrs...),
	})
	if errors.Is(err, unix.ENOENT) {
		return false, "", nil
	}
	if err != nil {
		return false, "", fmt.Errorf("get table inet %s: %w", name, err)
	}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return false, "", fmt.Errorf("decode table inet %s: %w", name, err)
		}
		for ad.Next() {
			if ad.Type() == nftaTableUserdata {
				comment, _ = userdata.GetString(ad.Bytes(), udataTableComment)
			}
		}
		if err := ad.Err(); err != nil {
			return false, "", fmt.Errorf("decode table inet %s: %w", name, err)
		}
	}
	return true, comment, nil
}

// createTable creates the inet table with our comment in a transaction of
// its own; it fails with EEXIST if the table appeared meanwhile.
func createTable(c *netlink.Conn, name string) error {
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_TABLE_NAME, Data: []byte(name + "\x00")},
		{Type: unix.NFTA_TABLE_FLAGS, Data: []byte{0, 0, 0, 0}},
		{Type: nftaTableUserdata, Data: userdata.AppendString(nil, udataTableComment, ownerComment)},
	})
	if err != nil {
		return err
	}
	batch := []netlink.Message{
		{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_BEGIN), Flags: netlink.Request},
			Data: nfgen(unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES)},
		{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWTABLE),
			Flags: netlink.Request | netlink.Acknowledge | netlink.Create | netlink.Excl},
			Data: append(nfgen(unix.NFPROTO_INET, 0), attrs...)},
		{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_END), Flags: netlink.Request},
			Data: nfgen(unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES)},
	}
	if _, err := c.SendMessages(batch); err != nil {
		return fmt.Errorf("create table inet %s: %w", name, err)
	}
	// One answer: the ack of NEWTABLE, or its error.
	if _, err := c.Receive(); err != nil {
		return fmt.Errorf("create table inet %s: %w", name, err)
	}
	return nil
}
