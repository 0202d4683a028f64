package org.wsrelay.interop.ws;

import java.io.ByteArrayInputStream;
import java.net.URI;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.util.Base64;

import javax.naming.ldap.LdapName;
import javax.naming.ldap.Rdn;

import org.springframework.web.socket.BinaryMessage;
import org.springframework.web.socket.CloseStatus;
import org.springframework.web.socket.TextMessage;
import org.springframework.web.socket.WebSocketSession;
import org.springframework.web.socket.handler.AbstractWebSocketHandler;

/**
 * Echoes every text and binary message. The text message {@code info} is answered with a JSON
 * object describing the session as this service received it: {@code instanceId}, {@code path},
 * {@code query}, {@code authorization}, {@code subprotocol}, {@code host}, {@code remoteAddress} (where the session came from,
 * {@code InetSocketAddress.toString()}), {@code origin}, and the
 * client-certificate headers a gateway sets for Zowe's {@code x509} scheme
 * ({@code X-Certificate-Public}, {@code X-Certificate-DistinguishedName},
 * {@code X-Certificate-CommonName}, {@code Client-Cert}, {@code X-Zowe-Auth-Failure}), with what Java
 * itself reads from the certificate in {@code X-Certificate-Public} ({@code getSubjectDN().getName()} and
 * the first {@code cn} of that name through {@code LdapName}, as the Zowe gateway computes its headers).
 * The text
 * {@code close:CODE} makes the service close with that close code.
 */
class EchoHandler extends AbstractWebSocketHandler {
    private final String instanceId;

    EchoHandler(String instanceId) {
        this.instanceId = instanceId;
    }

    @Override
    protected void handleTextMessage(WebSocketSession session, TextMessage message) throws Exception {
        String text = message.getPayload();
        if (text.equals("info")) {
            session.sendMessage(new TextMessage(info(session)));
        } else if (text.startsWith("close:")) {
            session.close(new CloseStatus(Integer.parseInt(text.substring(6).trim()), "asked to close"));
        } else {
            session.sendMessage(new TextMessage(text));
        }
    }

    @Override
    protected void handleBinaryMessage(WebSocketSession session, BinaryMessage message) throws Exception {
        session.sendMessage(new BinaryMessage(message.getPayload()));
    }

    private String info(WebSocketSession session) {
        URI uri = session.getUri();
        StringBuilder b = new StringBuilder("{");
        field(b, "instanceId", instanceId);
        field(b, "path", uri == null ? null : uri.getRawPath());
        field(b, "query", uri == null ? null : uri.getRawQuery());
        field(b, "authorization", session.getHandshakeHeaders().getFirst("Authorization"));
        field(b, "subprotocol", session.getAcceptedProtocol());
        field(b, "host", session.getHandshakeHeaders().getFirst("Host"));
        field(b, "remoteAddress", session.getRemoteAddress() == null ? null : session.getRemoteAddress().toString());
        field(b, "origin", session.getHandshakeHeaders().getFirst("Origin"));
        field(b, "certificatePublic", session.getHandshakeHeaders().getFirst("X-Certificate-Public"));
        field(b, "certificateDistinguishedName",
                session.getHandshakeHeaders().getFirst("X-Certificate-DistinguishedName"));
        field(b, "certificateCommonName", session.getHandshakeHeaders().getFirst("X-Certificate-CommonName"));
        field(b, "clientCert", session.getHandshakeHeaders().getFirst("Client-Cert"));
        field(b, "zoweAuthFailure", session.getHandshakeHeaders().getFirst("X-Zowe-Auth-Failure"));
        // The oracle: what Java (as the Zowe gateway does) makes of the certificate received.
        String pub = session.getHandshakeHeaders().getFirst("X-Certificate-Public");
        String javaDn = null;
        String javaCn = null;
        if (pub != null) {
            try {
                X509Certificate cert = (X509Certificate) CertificateFactory.getInstance("X.509")
                        .generateCertificate(new ByteArrayInputStream(Base64.getDecoder().decode(pub)));
                javaDn = cert.getSubjectDN().getName();
                for (Rdn rdn : new LdapName(javaDn).getRdns()) {
                    if ("cn".equalsIgnoreCase(rdn.getType())) {
                        javaCn = String.valueOf(rdn.getValue());
                        break;
                    }
                }
            } catch (Exception e) {
                javaDn = "unreadable: " + e;
            }
        }
        field(b, "javaDistinguishedName", javaDn);
        field(b, "javaCommonName", javaCn);
        b.setLength(b.length() - 1);
        return b.append('}').toString();
    }

    private static void field(StringBuilder b, String name, String value) {
        b.append('"').append(name).append("\":");
        if (value == null || value.isEmpty()) {
            b.append("null,");
            return;
        }
        b.append('"');
        for (char c : value.toCharArray()) {
            if (c == '"' || c == '\\') {
                b.append('\\').append(c);
            } else if (c < 0x20) {
                b.append(String.format("\\u%04x", (int) c));
            } else {
                b.append(c);
            }
        }
        b.append("\",");
    }
}
