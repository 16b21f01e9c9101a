package twilioapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	openapi "github.com/twilio/twilio-go/rest/api/v2010"

	"sentinel/internal/traffic"
)

// benchPage is a page of n messages as Twilio writes them.
func benchPage(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"messages": [`)
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"account_sid": "AC00000000000000000000000000000001", "api_version": "2010-04-01", "body": "Your order has shipped", "date_created": "Fri, 24 May 2019 17:44:46 +0000", "date_sent": "Fri, 24 May 2019 17:44:50 +0000", "date_updated": "Fri, 24 May 2019 17:44:50 +0000", "direction": "outbound-api", "error_code": null, "error_message": null, "from": "+15557770000", "messaging_service_sid": "MG00000000000000000000000000000001", "num_media": "0", "num_segments": "1", "price": "-0.00790", "price_unit": "USD", "sid": "SM%032x", "status": "delivered", "subresource_uris": {"media": "/2010-04-01/Accounts/AC00000000000000000000000000000001/Messages/SM%032x/Media.json"}, "to": "+1202555%04d", "uri": "/2010-04-01/Accounts/AC00000000000000000000000000000001/Messages/SM%032x.json"}`, i, i, i%10000, i)
	}
	b.WriteString(`], "next_page_uri": null, "page": 0, "page_size": 1000, "start": 0, "end": 999, "uri": "/x", "first_page_uri": "/x", "previous_page_uri": null}`)
	return b.Bytes()
}

func BenchmarkDecodePage(b *testing.B) {
	page := benchPage(1000)
	peers, _ := traffic.NewPeers(make([]byte, traffic.PeerKeySize))
	c := &Client{classifier: traffic.NewClassifier(), peers: peers}
	b.Run("TwilioGo", func(b *testing.B) {
		b.SetBytes(int64(len(page)))
		for b.Loop() {
			var p openapi.ListMessageResponse
			if err := json.NewDecoder(bytes.NewReader(page)).Decode(&p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Sentinel", func(b *testing.B) {
		b.SetBytes(int64(len(page)))
		var p messagePage
		var msgs []traffic.Message
		for b.Loop() {
			p.reset()
			if err := json.NewDecoder(bytes.NewReader(page)).Decode(&p); err != nil {
				b.Fatal(err)
			}
			msgs, _ = c.convertPage(msgs[:0], nil, "AC00000000000000000000000000000001", p.Messages)
		}
	})
}
