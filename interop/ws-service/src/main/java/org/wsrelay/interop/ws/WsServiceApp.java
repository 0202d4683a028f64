package org.wsrelay.interop.ws;

import java.util.Arrays;

import org.springframework.beans.factory.annotation.Value;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.web.socket.config.annotation.EnableWebSocket;
import org.springframework.web.socket.config.annotation.WebSocketConfigurer;
import org.springframework.web.socket.config.annotation.WebSocketHandlerRegistry;
import org.springframework.web.socket.server.support.DefaultHandshakeHandler;

/**
 * A WebSocket service like Zowe's discoverable client: an echo endpoint under
 * {@code /discoverableclient/ws/} (and under the REST route's {@code /discoverableclient/api/v1/},
 * which a Zowe v3 gateway also upgrades), registered in Eureka by the real Spring Cloud Netflix client
 * with the {@code apiml.routes.ws_v1} metadata of {@code application.yml}.
 *
 * <p>Command line: {@code --server.port=N --instance-id=ID --eureka.client.service-url.defaultZone=URL}.
 * Its own status is set with Spring Cloud's {@code service-registry} actuator endpoint
 * ({@code POST /actuator/service-registry {"status":"DOWN"}}).
 */
@SpringBootApplication
@EnableWebSocket
public class WsServiceApp implements WebSocketConfigurer {
    @Value("${eureka.instance.instance-id}")
    private String instanceId;

    @Value("${ws.subprotocols}")
    private String subprotocols;

    public static void main(String[] args) {
        SpringApplication.run(WsServiceApp.class, args);
    }

    @Override
    public void registerWebSocketHandlers(WebSocketHandlerRegistry registry) {
        DefaultHandshakeHandler handshake = new DefaultHandshakeHandler();
        handshake.setSupportedProtocols(
                Arrays.stream(subprotocols.split(",")).map(String::trim).filter(s -> !s.isEmpty())
                        .toArray(String[]::new));
        registry.addHandler(new EchoHandler(instanceId), "/discoverableclient/ws", "/discoverableclient/ws/**",
                        "/discoverableclient/api/v1/**")
                .setHandshakeHandler(handshake)
                .setAllowedOriginPatterns("*");
    }
}
